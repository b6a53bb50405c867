"""The one-call GPU benchmark runs end to end on the CPU (`bash bench/gpu.sh --smoke`): every row, one JSON."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_smoke_writes_every_row(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--smoke", "--out", str(tmp_path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((tmp_path / "gpu_smoke.json").read_text())
    rows = payload["rows"]
    assert payload["smoke"] and payload["complete"] and set(rows) == {"mlp", "ot_cfm", "dopri5", "backbones", "latent",
                                                                      "pipeline"}
    numbers = [rows["mlp"][b][k] for b in ("256", "4096")
               for k in ("flowkit", "flowkit_compiled", "torchcfm", "flow_matching")]
    numbers += [rows["ot_cfm"]["flowkit"], rows["ot_cfm"]["torchcfm_ot"], rows["dopri5"]["flowkit"],
                rows["dopri5"]["flow_matching"]]
    numbers += [rows["backbones"][name]["ms_per_step"] for name in ("unet", "adm", "dit")]
    numbers += [rows["latent"]["DiT-B/2"]["ms_per_step"], rows["pipeline"]["encode_images_per_s"],
                rows["pipeline"]["streamed_ms_per_step"]]
    assert rows["pipeline"]["decoded_png"]
    assert all(math.isfinite(v) and v > 0 for v in numbers), numbers
    assert rows["dopri5"]["flowkit_nfe"] > 0 and (tmp_path / "gpu_smoke.md").read_text().startswith("GPU rows on")
