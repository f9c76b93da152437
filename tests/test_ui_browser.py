"""`animatediff ui` in a real browser: Debian's Chromium driven by Playwright for Python.

Generates with the embedded world model and downloads the result, queues a second tab behind a running job and
cancels that job, reloads a history entry's settings, shows a loader's error and refuses an empty prompt. Skips,
saying why, where Playwright or a Chromium is missing (`scripts/install_chromium.sh` installs Debian's). With
ANIMATEDIFF_UI_SCREENSHOT=PATH it saves the page's screenshot there (docs/ui.png is one).
"""

import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from animatediff.io.video import save_video
from animatediff.ui.server import make_server
from animatediff.ui.studio import Studio

CHROMIUM = os.environ.get("ANIMATEDIFF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PROMPT = "a red circle moving right on a blue background"

pytestmark = pytest.mark.slow


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    if CHROMIUM is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ANIMATEDIFF_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def app(tmp_path):
    models = tmp_path / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    (models / "broken.safetensors").write_bytes(b"\x00" * 64)
    add_ip_adapter(tmp_path / "models" / "ipadapter")
    add_controlnet(tmp_path / "models" / "ControlNet" / "edges")
    add_embedding(tmp_path / "models" / "embeddings")
    studio = Studio(tmp_path / "models", tmp_path / "out")
    server = make_server(studio, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    studio.close()


def add_ip_adapter(folder):
    """A tiny random IP-Adapter for the world base, with its image encoder beside it."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from animatediff.world.layout import embedded_models
    from tests.test_ip_adapter import tiny_image_encoder, tiny_ip_adapter

    folder.mkdir(parents=True)
    unet = UNet2DConditionModel.from_pretrained(embedded_models().base / "unet", torch_dtype=torch.float32)
    save_file(tiny_ip_adapter(unet), str(folder / "look.safetensors"))
    tiny_image_encoder(folder / "image_encoder")


def add_embedding(folder):
    """A textual-inversion embedding for the world base: `zright`, the text encoder's vectors of "moving right"."""
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    from animatediff.world.layout import embedded_models

    base = embedded_models().base
    ids = CLIPTokenizer.from_pretrained(base / "tokenizer")("moving right", add_special_tokens=False).input_ids
    table = CLIPTextModel.from_pretrained(base / "text_encoder").get_input_embeddings().weight.detach()
    folder.mkdir(parents=True)
    torch.save({"string_to_param": {"*": table[ids].clone()}, "name": "zright"}, folder / "zright.pt")


def add_controlnet(folder):
    """A ControlNet for the world base (from its UNet, 4× conditioning as its VAE), residual layers random."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    from animatediff.world.layout import embedded_models

    unet = UNet2DConditionModel.from_pretrained(embedded_models().base / "unet", torch_dtype=torch.float32)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32))
    torch.manual_seed(0)
    for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        torch.nn.init.normal_(block.weight, std=0.05)
    controlnet.save_pretrained(folder)


def open_page(context, url):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return page


def fill(page, prompt=PROMPT, frames=8, steps=4, seed=None):
    page.fill("#prompt", prompt)
    page.fill("#frames", str(frames))
    page.fill("#steps", str(steps))
    page.fill("#seed", "" if seed is None else str(seed))


def test_generate_download_queue_cancel_history(browser, app, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    first = open_page(context, app)

    # The embeddings folder's words are shown; they are loaded for the run.
    assert "zright" in first.text_content("#embedding_words")
    # Generate with the embedded world model; the result plays and downloads with its frames.
    fill(first, seed=5)
    first.click("#generate")
    first.wait_for_selector("#status[data-state='done']", timeout=120_000)
    first.wait_for_selector("#result")
    assert first.text_content("#used-seed") == "5"
    with first.expect_download() as download:
        first.click("#download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    with Image.open(saved) as gif:
        assert gif.n_frames == 8
    if os.environ.get("ANIMATEDIFF_UI_SCREENSHOT"):
        first.screenshot(path=os.environ["ANIMATEDIFF_UI_SCREENSHOT"], full_page=True)

    # A long job runs; a second tab's request queues behind it; cancelling the first lets the second finish.
    fill(first, steps=200, seed=6)
    first.click("#generate")
    first.wait_for_function("document.getElementById('status').textContent.startsWith('step ')", timeout=60_000)
    second = open_page(context, app)
    fill(second, prompt="a green square moving up on a black background", seed=7)
    second.click("#generate")
    second.wait_for_function("document.getElementById('status').textContent === 'queued: position 1'")
    first.click("#cancel")
    first.wait_for_selector("#status[data-state='cancelled']", timeout=60_000)
    second.wait_for_selector("#status[data-state='done']", timeout=120_000)

    # The history keeps both results; one click loads the first one's settings back into the form.
    first.reload()
    first.wait_for_selector("body[data-ready='1']")
    assert first.locator(".history-item").count() == 2
    first.fill("#prompt", "something else")
    first.locator(".history-item").last.locator("button.load").click()
    assert first.input_value("#prompt") == PROMPT
    assert (first.input_value("#seed"), first.input_value("#frames"), first.input_value("#steps")) == ("5", "8", "4")

    # Image to video: a picture uploaded as the first keyframe of the embedded RGB SparseCtrl encoder.
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "first.png")
    first.click("#sparse summary")
    first.select_option("#sparsectrl", "world:rgb")
    first.click("#add-image")
    first.set_input_files("#keyframe-images input[type=file]", str(tmp_path / "first.png"))
    first.wait_for_function("document.querySelector('#keyframe-images tr').dataset.upload !== ''")
    first.click("#generate")
    first.wait_for_selector("#status[data-state='done']", timeout=120_000)
    assert first.locator(".history-item").count() == 3
    first.select_option("#sparsectrl", "")

    # An image prompt: the IP-Adapter from the models folder and an uploaded picture; loading it back opens its panel.
    first.click("#image-prompt summary")
    first.select_option("#ip_adapter", "ipadapter/look.safetensors")
    first.fill("#ip_scale", "0.7")
    first.click("#long summary")
    first.check("#loop")
    first.fill("#motion_scale", "1.2")
    first.set_input_files("#ip-file", str(tmp_path / "first.png"))
    first.wait_for_function("document.getElementById('ip_image').value !== ''")
    first.click("#generate")
    first.wait_for_selector("#status[data-state='done']", timeout=120_000)
    assert first.locator(".history-item").count() == 4
    first.reload()
    first.wait_for_selector("body[data-ready='1']")
    first.locator(".history-item").first.locator("button.load").click()
    assert first.input_value("#ip_adapter") == "ipadapter/look.safetensors" and first.input_value("#ip_scale") == "0.7"
    assert first.evaluate("document.getElementById('image-prompt').open")
    assert first.evaluate("document.getElementById('long').open")  # opened: it holds settings of that run
    assert first.is_checked("#loop") and first.input_value("#motion_scale") == "1.2"
    first.click("#add-ip-keyframe")  # an image at a later frame: read into the form's ip_keyframes
    first.fill("#ip-keyframes input[type=number]", "5")
    first.set_input_files("#ip-keyframes input[type=file]", str(tmp_path / "first.png"))
    first.wait_for_function("document.querySelector('#ip-keyframes tr').dataset.upload !== ''")
    assert first.evaluate("readForm().ip_keyframes.map((row) => row.frame)") == [5]
    first.locator("#ip-keyframes button").click()
    first.select_option("#ip_adapter_2", "ipadapter/look.safetensors")  # a second image prompt at once
    first.fill("#ip_scale_2", "0.4")
    first.set_input_files("#ip-file-2", str(tmp_path / "first.png"))
    first.wait_for_function("document.getElementById('ip_image_2').value !== ''")
    second = first.evaluate("[readForm().ip_adapter_2, readForm().ip_scale_2, readForm().ip_image_2 !== '']")
    assert second == ["ipadapter/look.safetensors", 0.4, True]
    first.select_option("#ip_adapter_2", "")
    first.set_input_files("#ip-mask-file", str(tmp_path / "first.png"))  # the image prompt's mask, an upload
    first.wait_for_function("readForm().ip_mask !== ''")
    first.select_option("#ip_adapter", "")
    first.uncheck("#loop")
    first.fill("#motion_scale", "")

    # A ControlNet unit: its model, scale, uploaded control video and start; loading the run back restores the unit.
    first.click("#controls summary")
    first.click("#add-controlnet")
    unit = first.locator(".control-unit").first
    unit.locator("select[data-kind=controlnet]").select_option("ControlNet/edges")
    unit.locator(".scale").fill("0.6")
    unit.locator(".start").fill("0.25")
    save_video(np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32), tmp_path / "control.gif")
    unit.locator("input[type=file]").set_input_files(str(tmp_path / "control.gif"))
    first.wait_for_function("document.querySelector('.control-unit').dataset.upload !== ''")
    first.click("#generate")
    first.wait_for_selector("#status[data-state='done'], #status[data-state='error']", timeout=120_000)
    assert first.get_attribute("#status", "data-state") == "done", first.text_content("#error")
    assert first.locator(".history-item").count() == 5
    first.click("#add-controlnet")  # a second, empty unit: gone once the run's settings are loaded back
    first.locator(".history-item").first.locator("button.load").click()
    assert first.locator(".control-unit").count() == 1 and first.evaluate("document.getElementById('controls').open")
    assert (unit.locator("select[data-kind=controlnet]").input_value(), unit.locator(".scale").input_value()) == (
        "ControlNet/edges",
        "0.6",
    )
    assert unit.locator(".start").input_value() == "0.25" and "(uploaded)" in unit.text_content()
    first.locator(".control-unit button").click()

    # A regional prompt: an uploaded mask and its prompt; loading the run back restores the row.
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    first.click("#regional summary")
    first.click("#add-region")
    first.set_input_files("#regions td:first-child input[type=file]", str(tmp_path / "mask.png"))
    first.wait_for_function("document.querySelector('#regions tr').dataset.upload !== ''")
    first.fill("#regions input[type=text]", "a green square on a white background")
    first.click("#generate")
    first.wait_for_selector("#status[data-state='done'], #status[data-state='error']", timeout=120_000)
    assert first.get_attribute("#status", "data-state") == "done", first.text_content("#error")
    first.reload()
    first.wait_for_selector("body[data-ready='1']")
    first.locator(".history-item").first.locator("button.load").click()
    assert first.evaluate("document.getElementById('regional').open")
    assert first.input_value("#regions input[type=text]") == "a green square on a white background"
    assert "(uploaded)" in first.text_content("#regions")
    first.locator("#regions button").click()

    # A model that fails to load shows its one-line error; the page goes on serving.
    first.select_option("#dreambooth", "Stable-diffusion/broken.safetensors")
    first.click("#generate")
    first.wait_for_selector("#status[data-state='error']", timeout=60_000)
    assert "broken.safetensors" in first.text_content("#error")

    # The form refuses an empty prompt and an out-of-range value before sending them.
    first.fill("#prompt", "")
    first.click("#generate")
    assert first.text_content("#error") == "prompt: empty (say what to animate)"
    fill(first, frames=0)
    first.click("#generate")
    assert first.text_content("#error").startswith("frames:")
    context.close()
