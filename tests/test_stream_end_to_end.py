"""`edgebci hil --stream` on real programs: a whole recorded run streamed sample by sample through the
firmware (a Linux process; QEMU mps2-an386 in the slow tier), nothing lost, the filter bit-exact on
every chunk, one decision per hop equal to the host reference, the latency budget in the report."""
import json

import pytest

from edgebci.cli import main
from edgebci.data import SAMPLE_DIR, default_data_dir, read_recording
from edgebci.defaults import BUNDLED_CHECKPOINT
from edgebci.pipeline import compile_for_target

from .conftest import needs_arm

pytestmark = pytest.mark.device
RECORDING = SAMPLE_DIR / "S015R04.edf"


def _assert_whole_recording_streamed(r: dict, recording=RECORDING):
    n = read_recording(recording).samples.shape[1]
    s = r["stream"]
    assert s["samples_sent"] == n == s["samples_acked"] and s["samples_lost"] == 0
    assert s["failed"] == 0 and s["acked"] + s["retried"] == s["chunks"] == -(-n // s["chunk_samples"])
    ex = r["filter_bit_exact"]
    assert ex["bit_exact"] and ex["chunks_equal"] == s["chunks"] and ex["samples_checked"] == n
    d = r["decisions"]
    assert d["received"] == d["expected"] == (n - 480) // 80 + 1 and d["host_only"] == 0
    assert r["agreement"]["rate"] == 1.0 and r["agreement"]["scores_within_tolerance"]
    acc = r["accuracy"]
    assert acc["labelled_decisions"] == acc["cues"] == 15 and 0.0 <= acc["device_balanced_accuracy"] <= 1.0
    lb = r["latency_budget"]
    assert 20 < lb["filter_group_delay_ms"] < 50 and lb["hop_ms"] == 500.0
    assert lb["total_ms"] == pytest.approx(lb["filter_group_delay_ms"] + lb["hop_ms"] + lb["compute_ms"])
    assert r["ok"]


@pytest.fixture(scope="module")
def host_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("host")
    compile_for_target(BUNDLED_CHECKPOINT, "host", out, progress=False)
    return out


def test_stream_whole_recording_through_a_linux_process(host_build, tmp_path, capsys):
    assert main(["hil", str(host_build), "--stream", "--data", str(RECORDING), "--out", str(tmp_path),
                 "--quiet"]) == 0
    assert "PASS host stream" in capsys.readouterr().out
    r = json.loads((tmp_path / "report.json").read_text())
    _assert_whole_recording_streamed(r)
    assert r["latency_budget"]["compute"]["metric"] == "process_latency_us"
    assert (tmp_path / "stream.json").exists() and "Latency budget" in (tmp_path / "report.html").read_text()


def test_stream_chunking_does_not_change_decisions(host_build, tmp_path):
    """Chunks of 80 and of 33 samples: the same decisions, bit for bit."""
    runs = []
    for chunk in (80, 33):
        assert main(["hil", str(host_build), "--stream", "--data", str(RECORDING), "--out", str(tmp_path / str(chunk)),
                     "--chunk-samples", str(chunk), "--quiet"]) == 0
        raw = json.loads((tmp_path / str(chunk) / "stream.json").read_text())
        runs.append([(d["end_sample"], d["device_scores"]) for rec in raw["recordings"] for d in rec["decisions"]])
    assert runs[0] == runs[1] and len(runs[0]) > 200


HELD_IN = default_data_dir() / "S001R04.edf"     # a training subject's run, when the EEGMMIDB folder is present


@needs_arm
@pytest.mark.slow
@pytest.mark.parametrize("recording", [RECORDING, HELD_IN], ids=["held_out_S015R04", "held_in_S001R04"])
def test_stream_whole_recording_through_the_emulated_board(tmp_path, capsys, recording):
    """About 90 s each: a whole run (about 20,000 samples, 240 decisions) through QEMU mps2-an386, the filter
    bit-exact with the Python reference on every chunk."""
    if not recording.exists():
        pytest.skip(f"{recording} is not here: set EDGEBCI_DATA to the EEGMMIDB folder")
    m4 = tmp_path / "m4"
    compile_for_target(BUNDLED_CHECKPOINT, "mps2-an386", m4, progress=False)
    assert main(["hil", str(m4), "--stream", "--data", str(recording), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "PASS mps2-an386 stream" in capsys.readouterr().out
    r = json.loads((tmp_path / "r" / "report.json").read_text())
    _assert_whole_recording_streamed(r, recording)
    compute = r["latency_budget"]["compute"]
    assert compute["metric"] == "qemu_insn_count" and compute["median"] > 1e6
    assert "qemu_insn_count" in (tmp_path / "r" / "report.html").read_text()
