"""The explorer page's screenshot in docs/explorer.md (docs/images/explorer.png), made with the browser code of the
tests (tests/browser.py: headless Chromium from the system packages, driven by selenium).

    lstm-np train --task dates --max-seconds 150 --out runs/dates
    python docs/screenshot.py --checkpoint runs/dates [--source "Saturday, April 3, 2021"] [--out PNG]
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser import chromium, missing, running, submit  # noqa: E402  (tests/browser.py)

from lstm_np.serve import Explorer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a directory written by 'lstm-np train'")
    p.add_argument("--source", default="Saturday, April 3, 2021", help="the source typed into the page")
    p.add_argument("--unit", type=int, default=None, help="the unit to follow [the encoder unit whose c_t varies most]")
    p.add_argument("--width", type=int, default=1280, help="browser window width in pixels [1280]")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "images", "explorer.png"), help="PNG to write")
    args = p.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"screenshot.py: {reason}")
    explorer = Explorer.from_checkpoint(args.checkpoint)
    with running(explorer) as url, chromium(width=args.width) as driver:
        driver.get(url)
        if submit(driver, args.source) != "done":
            sys.exit("screenshot.py: the page showed an error: "
                     + driver.execute_script("return document.getElementById('error').textContent"))
        unit = args.unit
        if unit is None:   # a unit that visibly carries something across the source
            unit = driver.execute_script("""
                const c = result.encoder.c;
                const span = c[0].map((_, u) => Math.max(...c.map(r => r[u])) - Math.min(...c.map(r => r[u])));
                return span.indexOf(Math.max(...span));""")
        driver.execute_script("selectUnit(arguments[0])", unit)
        for _ in range(5):   # the whole page in the viewport (the window's size includes its frame)
            missing_px = driver.execute_script("return document.documentElement.scrollHeight - window.innerHeight")
            if missing_px <= 0:
                break
            driver.set_window_size(args.width, driver.get_window_size()["height"] + missing_px)
        driver.execute_script("document.getElementById('readout').textContent = arguments[0]",
                              "hover a cell for its value · click a row to follow that unit")
        driver.save_screenshot(args.out)
    print(f"wrote {args.out} ({args.source!r}, unit {unit})")


if __name__ == "__main__":
    main()
