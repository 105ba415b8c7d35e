"""The web page in headless chromium (Playwright): drop an image, see its position on the map."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import List

import httpx
import pytest
from playwright.sync_api import expect

DROP = """async ([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
  const zone = document.getElementById("drop");
  zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
  zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
}"""

PIXEL = """() => {
  const c = document.getElementById("map");
  const [x, y] = c.dataset.markerPx.split(",").map(Number);
  return Array.from(c.getContext("2d").getImageData(x, y, 1, 1).data);
}"""


@pytest.mark.slow
def test_dropped_image_appears_on_the_map(browser, live_server: str, query_images: List[Path]) -> None:
    image = query_images[5]
    expected = httpx.post(f"{live_server}/v1/localize?k=5", content=image.read_bytes(), timeout=60).json()
    page = browser.new_page()
    outside: List[str] = []
    page.on("request", lambda r: None if r.url.startswith((live_server, f"blob:{live_server}")) else outside.append(r.url))
    try:
        page.goto(f"{live_server}/")
        # (selectors, not wait_for_function: the page's content policy forbids string evaluation)
        page.wait_for_selector("#map[data-frames='12']", state="attached", timeout=30_000)
        page.evaluate(DROP, [base64.b64encode(image.read_bytes()).decode(), image.name])
        page.wait_for_selector("#map[data-localised='1']", state="attached", timeout=60_000)
        best = expected["position"]
        text = page.inner_text("#position")
        assert f"x {best['x']:.1f} m, y {best['y']:.1f} m" in text
        # the status line follows the drawing: wait for it (expect retries until it matches)
        expect(page.locator("#status")).to_have_text(f"localised {image.name}", timeout=30_000)
        # the marker is drawn where the page says it is: an opaque pixel of the estimate's colour
        r, g, b, a = page.evaluate(PIXEL)
        assert a == 255 and (r, g, b) != (255, 255, 255)
        colour = page.evaluate("document.getElementById('map').dataset.markerColour")
        assert colour == f"#{r:02x}{g:02x}{b:02x}"
        # the top-k thumbnails are shown, best first
        assert page.locator("#candidates .cand").count() == len(expected["candidates"])
        assert page.locator("#candidates .cand.best img").get_attribute("src").startswith("blob:")
    finally:
        page.close()
    assert outside == []  # nothing was fetched from anywhere else



@pytest.mark.slow
def test_a_folder_plays_as_a_session(browser, live_server: str, query_images: List[Path]) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{live_server}/")
        page.wait_for_selector("#map[data-frames='12']", state="attached", timeout=30_000)
        page.fill("#delay", "0")
        folder = query_images[0].parent  # a directory input takes the folder (it holds exactly these frames)
        assert sorted(folder.glob("*.jpg")) == query_images
        page.set_input_files("#folder-input", str(folder))
        n = len(query_images)
        page.wait_for_selector(f"#map[data-localised='{n}']", state="attached", timeout=120_000)
        assert f"session frame {n}/{n}" in page.inner_text("#frame-info")
        page.wait_for_selector("#stop[disabled]", state="attached", timeout=30_000)
        expect(page.locator("#status")).to_have_text(f"played {n} frames", timeout=30_000)
        assert page.locator("#candidates .cand").count() >= 1
    finally:
        page.close()
    # the page closed its session when it finished
    assert httpx.get(f"{live_server}/healthz").json()["sessions"] == 0
