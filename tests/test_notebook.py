"""notebooks/blendgan.ipynb runs top to bottom (nbclient) on the generated 256px test weights:
offline (its download cell skips), two faces and two styles, every display inline."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs nbformat (test extra)")
nbclient = pytest.importorskip("nbclient", reason="needs nbclient (test extra)")
pytest.importorskip("ipykernel", reason="needs ipykernel (test extra)")
pytest.importorskip("av", reason="the video cell needs the video extra")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "blendgan.ipynb"


def test_notebook_runs_offline_on_the_test_weights(golden_ckpts, sample_dirs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    for name, value in (("BLENDGAN_NOTEBOOK_CKPT", golden_ckpts.blendgan), ("BLENDGAN_NOTEBOOK_PSP", golden_ckpts.psp),
                        ("BLENDGAN_NOTEBOOK_FACES", sample_dirs.faces), ("BLENDGAN_NOTEBOOK_STYLES", sample_dirs.styles),
                        ("BLENDGAN_NOTEBOOK_OUT", out), ("BLENDGAN_OFFLINE", "1")):
        monkeypatch.setenv(name, str(value))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "offline: download skipped" in text
    assert "4 written, 0 already present (skipped), 0 failed" in text   # 2 faces x 2 styles
    assert "2 faces x 2 styles" in text
    shown = [(mime, data) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if o.get("output_type") == "display_data" for mime, data in o["data"].items() if mime.startswith("image/")]
    kinds = {mime for mime, _ in shown}
    assert {"image/jpeg", "image/png", "image/gif"} <= kinds, kinds
    gif = next(base64.b64decode(data) for mime, data in shown if mime == "image/gif")
    assert gif[:6] in (b"GIF87a", b"GIF89a")
    sheet = out / "contact_sheet.png"
    assert sheet.exists() and len(list((out / "transfer").glob("*.jpg"))) == 4
    from blendgan import io
    assert io.read_image(sheet).shape == (3 * 256, 3 * 256, 3)
    assert os.environ["BLENDGAN_OFFLINE"] == "1"
