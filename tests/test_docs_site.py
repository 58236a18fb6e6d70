"""The built site renders: headless Chromium screenshots of the home page, a technique guide and an API page.

Reads the site ``make docs`` built (``docs/_build/html``; CI builds it before
``make test``) and skips, saying why, when it or Chromium (``make chromium``)
is missing. For each page: every stylesheet, script and image it loads is a
local file that exists (the site works offline), the rendered text holds no raw
Markdown or reST, and the screenshot is a page, not a blank or an error.
The screenshots are kept in ``docs/_build/screenshots`` to look at.
"""

import html.parser
import os
import pathlib
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
SHOTS = ROOT / "docs" / "_build" / "screenshots"
PAGES = {
    "home": ("index.html", "Ten lines of Python"),
    "guide": ("guides/pruning.html", "Global pruning"),
    "api": ("api/tfcompress.optimize.html", "Compress a trained tf_keras model"),
}
RAW = ["```", "](", "{doc}`", ":func:`", ":class:`", ".. automodule", ".. code-block", "**Args:**"]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars"]


def _browser():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _needs_site_and_browser():
    if not (SITE / "index.html").exists():
        pytest.skip("the site is not built: run `make docs` first (CI does)")
    if not _browser():
        pytest.skip("no headless Chromium: `make chromium` (apt-get install chromium) installs it")


class _Assets(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.assets, self.search = [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.assets.append(a.get("href"))
        elif tag in ("script", "img") and a.get("src"):
            self.assets.append(a["src"])
        elif tag == "input" and a.get("name") == "q":
            self.search = True


def _chromium(page, *args):
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([_browser(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                              capture_output=True, text=True, timeout=120)


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders(name, tmp_path):
    _needs_site_and_browser()
    rel, heading = PAGES[name]
    page = SITE / rel
    assert page.exists(), f"{rel} is missing from the site"

    parser = _Assets()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.search, f"{rel} has no search box"
    for url in parser.assets:
        assert not url.startswith(("http:", "https:", "//")), f"{rel} loads {url} from the network"
        target = (page.parent / url.split("?")[0].split("#")[0]).resolve()
        assert target.exists(), f"{rel} loads {url}, which is not in the site"

    dom = _chromium(page, "--dump-dom", "--virtual-time-budget=3000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = _Text()
    text.feed(dom.stdout)
    visible = " ".join(text.parts)
    assert heading in visible, f"{rel}: '{heading}' is not on the rendered page"
    # code blocks may show Markdown legitimately; prose must not
    prose = " ".join(t for t in text.parts if "\n" not in t.strip())
    raw = [r for r in RAW if r in prose]
    assert not raw, f"{rel} shows raw markup: {raw}"

    shot = tmp_path / f"{name}.png"
    run = _chromium(page, f"--screenshot={shot}", "--window-size=1280,1600", "--virtual-time-budget=3000")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (1600, 1280)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    inked = np.abs(pixels - background).sum(axis=-1) > 0.25
    assert inked.mean() > 0.02, f"{rel}: the screenshot is almost blank ({inked.mean():.1%} of pixels drawn)"
    # the sidebar and the text column both have ink, the column more: a styled page, not unstyled HTML
    # piled down the left edge (measured: styled 1.2 % / 6.9 %, without its CSS 9.0 % / 0.8 %)
    left, right = inked[:, :300].mean(), inked[:, 400:].mean()
    assert left > 0.003 and right > 0.01 and right > left, f"{rel}: the layout did not load ({left:.1%}, {right:.1%})"
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SHOTS / shot.name)
    os.utime(SHOTS / shot.name)
