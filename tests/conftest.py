import pytest

from animatediff.models import inflate_unet
from animatediff.pipeline import AnimationPipeline
from tests.tiny import official_scheduler, tiny_motion, tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae


@pytest.fixture
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture
def make_pipeline(tokenizer):
    def make(version: str = "v3", random: bool = True) -> AnimationPipeline:
        unet = inflate_unet(tiny_unet(), tiny_motion(version, random=random))
        return AnimationPipeline(tokenizer, tiny_text_encoder(len(tokenizer)), tiny_vae(), unet, official_scheduler())

    return make
