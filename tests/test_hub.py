"""Only what can be a hub reference goes to the hub; a missing local path is "not found" at once."""

import time

import huggingface_hub
import pytest

from animatediff.hub import hub_reference, resolve_path

OFFICIAL = "models/Motion_Module/mm_sd_v15_v2.ckpt"


@pytest.fixture
def hub(monkeypatch):
    """The hub client, replaced: each call is recorded and answered with a local path (no network)."""
    calls = []

    def download(repo_id, filename):  # noqa: ANN001, ANN202
        calls.append((repo_id, filename))
        return f"/cache/{repo_id}/{filename}"

    def snapshot(repo_id, **kwargs):  # noqa: ANN001, ANN202
        calls.append((repo_id, None))
        return f"/cache/{repo_id}"

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return calls


@pytest.fixture
def no_hub(monkeypatch):
    def fail(*args, **kwargs):
        pytest.fail(f"the hub was asked for {args}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)


@pytest.mark.parametrize(
    "folders, path",
    [
        (["models"], OFFICIAL),  # the official layout, its file missing
        (["models/Motion_Module"], OFFICIAL),
        (["configs"], "configs/prompts/v2/extra/motion.ckpt"),  # 3+ parts under a local folder
        ([], "./models/mm.ckpt"),
        ([], "../mm.ckpt"),
        ([], "~/no-such-folder-here/mm.ckpt"),
        ([], "/no/such/mm.ckpt"),
        ([], "mm_sd_v15_v2.ckpt"),
        ([], "owner/name.ckpt"),  # a file name where a repository name goes
        ([], "owner/name/subfolder"),  # three parts, no file
        ([], "owner//name"),
        ([], "owner/na me"),
    ],
)
def test_a_missing_local_path_is_not_found_at_once(tmp_path, monkeypatch, no_hub, folders, path):
    monkeypatch.chdir(tmp_path)
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=f"^motion module not found: {path}$"):
        resolve_path(path, "motion module")
    assert time.perf_counter() - start < 0.5


def test_hub_references_still_go_to_the_hub(tmp_path, monkeypatch, hub):
    monkeypatch.chdir(tmp_path)  # no local folder named like an owner
    assert str(resolve_path("guoyww/animatediff", "motion module")) == "/cache/guoyww/animatediff"
    assert str(resolve_path("Qwen/Qwen2.5-0.5B")) == "/cache/Qwen/Qwen2.5-0.5B"  # a dot, not an extension
    assert str(resolve_path(OFFICIAL.replace("models/", "guoyww/animatediff/"))) == (
        "/cache/guoyww/animatediff/Motion_Module/mm_sd_v15_v2.ckpt"
    )
    assert str(resolve_path(OFFICIAL)) == "/cache/models/Motion_Module/mm_sd_v15_v2.ckpt"  # no local models/
    assert hub == [
        ("guoyww/animatediff", None),
        ("Qwen/Qwen2.5-0.5B", None),
        ("guoyww/animatediff", "Motion_Module/mm_sd_v15_v2.ckpt"),
        ("models/Motion_Module", "mm_sd_v15_v2.ckpt"),
    ]


def test_a_local_path_is_used_as_it_is(tmp_path, monkeypatch, no_hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").write_text("x")
    assert str(resolve_path("owner/name")) == "owner/name"
    assert hub_reference("owner/name") == ("owner/name", None)  # what it would be, were it not here


def test_the_official_path_fails_fast_on_the_command_line(tmp_path, monkeypatch, no_hub, capsys):
    """`generate` with the official motion-module path and a local models/ folder: one line, before any model loads."""
    from animatediff.cli import main
    from animatediff.pipeline import AnimationPipeline

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "StableDiffusion").mkdir(parents=True)
    monkeypatch.setattr(AnimationPipeline, "from_pretrained", lambda *a, **k: pytest.fail("a model loaded"))
    start = time.perf_counter()
    rc = main(["generate", "--base", "models/StableDiffusion", "--motion-module", OFFICIAL, "--prompt", "p"])
    assert rc == 2 and time.perf_counter() - start < 1
    assert capsys.readouterr().err == f"animatediff generate: error: motion module not found: {OFFICIAL}\n"
