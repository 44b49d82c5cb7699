"""What the browser checks (ComfyUI's frontend and the contact sheet in headless Chromium) need."""
from __future__ import annotations

import shutil
from pathlib import Path

from devkit.comfy_server import ROOT

BROWSER_TOOLS = ROOT / "tools" / "browser"  # puppeteer-core (`npm ci` here) and the page opener


def browser_missing() -> str | None:
    """Why the browser checks cannot run here, or None (CI installs Chromium and runs `npm ci`)."""
    if not Path("/usr/bin/chromium").exists():
        return "no /usr/bin/chromium (Debian package chromium)"
    if shutil.which("node") is None:
        return "no node"
    if not (BROWSER_TOOLS / "node_modules" / "puppeteer-core").is_dir():
        return "puppeteer-core not installed: run `npm ci` in tools/browser"
    return None
