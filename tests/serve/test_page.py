"""The web page in headless chromium (Playwright): drop an image, see its position on the map."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import List

import httpx
import pytest

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
        assert page.inner_text("#status") == f"localised {image.name}"
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

