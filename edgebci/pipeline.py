"""The user-facing flows, stage by stage: compile a checkpoint for a board, HIL-run it, report.

    compiled, image = compile_for_target(checkpoint, "mps2-an386", out_dir)
    summary = hil_and_report(out_dir, recordings, report_dir)
    summary = hil_stream_and_report(out_dir, recordings, report_dir, pace="max")   # whole recordings, per hop
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgebci.artifacts import read_manifest, sha256_file
from edgebci.compile import CompiledModel, compile_program
from edgebci.compile.sources import GraphOptions, load_decoder
from edgebci.data import SAMPLE_DIR, Windows, extract_cue_windows, read_recording
from edgebci.defaults import BUNDLED_CHECKPOINT, DEFAULT_TARGET
from edgebci.errors import ConfigError, DataError, LinkError
from edgebci.targets import Target

HOST_ENTRY = "ebci_decoder_run"


def _stage(progress: bool, text: str) -> None:
    if progress:
        print(f"  {text}", flush=True)


def _target_of(manifest: dict) -> Target:
    toml = manifest.get("target_file")
    return Target.from_name(toml if toml and Path(toml).exists() else manifest["target"])


def compile_for_target(source: Path, target_name: str | Path, out_dir: Path, progress: bool = True,
                       graph_options: GraphOptions = GraphOptions(), calibration: list[Path] | None = None,
                       recipe: str | None = None):
    """Compile a decoder (.pt, .pt2 or .onnx) to C, check the budget, build the firmware and the host reference.

    calibration : the user's recordings (labels unused) to calibrate an aligned zoo decoder with first; the
    calibrated checkpoint is written to out_dir/checkpoint.pt and compiled.
    recipe : compile the integer-only form of a float zoo checkpoint (see `quantized_source`).
    """
    target = Target.from_name(target_name)
    if recipe:
        source = quantized_source(Path(source), recipe, Path(out_dir), progress)
    if calibration:
        source = calibrate_to_file(Path(source), calibration, Path(out_dir) / "checkpoint.pt", progress)
    _stage(progress, f"[1/3] TVM: importing {Path(source).name} and lowering it to plain C for {target.name}")
    relax_mod, spec = load_decoder(source, graph_options)
    from edgebci.firmware.build import build_firmware, build_host_library
    compiled = compile_program(relax_mod, spec, target, out_dir, sha256_file(source))
    _stage(progress, f"[2/3] building firmware with {target.cc}")
    image = build_firmware(compiled.c_dir, target, out_dir / "firmware")
    (out_dir / "firmware" / "image.json").write_text(json.dumps(asdict(image), default=str, indent=2))
    _stage(progress, "[3/3] building the host reference library")
    build_host_library(compiled.c_dir, out_dir / "host")
    return compiled, image


def quantized_source(source: Path, recipe_name: str, out_dir: Path, progress: bool = True) -> Path:
    """The quantised checkpoint to compile for `--recipe`: the checkpoint itself when it is quantised with that
    recipe; for a float one, its bundled quantised sibling (checkpoints/quantized/<arch>-<recipe>.pt, made
    from the same float weights) or else PTQ on its training subjects, written to out_dir/quantized.pt."""
    from edgebci.defaults import QUANTIZED_DIR
    from edgebci.quantize.recipe import Recipe
    from edgebci.zoo import load_checkpoint, save_checkpoint
    recipe = Recipe.from_name(recipe_name)
    if source.suffix != ".pt":
        raise ConfigError(f"--recipe quantises zoo checkpoints (.pt); {source.name} is a {source.suffix} graph: export "
                          f"a QCDQ ONNX with Brevitas and compile that (no --recipe needed)")
    ckpt = load_checkpoint(source)
    if ckpt.quantized:
        have = ckpt.quantization["recipe"]["name"]
        if have != recipe.name:
            raise ConfigError(f"{source.name} is already quantised with recipe {have!r}, not {recipe.name!r}: compile it "
                              f"without --recipe, or quantise its float checkpoint with {recipe.name!r}")
        return source
    sibling = QUANTIZED_DIR / f"{ckpt.arch}-{recipe.name}.pt"
    if sibling.exists():
        bundled = load_checkpoint(sibling)
        if bundled.quantization.get("float_hash") == ckpt.content_hash():
            _stage(progress, f"[q] {recipe.name}: the bundled quantised {ckpt.arch} ({sibling.name}, "
                             f"{bundled.quantization['method']})")
            return sibling
    from edgebci.data import default_data_dir
    from edgebci.quantize.fit import quantize_checkpoint
    _stage(progress, f"[q] {recipe.name}: post-training quantisation of {source.name} on its training subjects")
    qckpt = quantize_checkpoint(ckpt, recipe, "ptq", default_data_dir(), progress)
    return save_checkpoint(qckpt, out_dir / "quantized.pt")


def calibrate_to_file(source: Path, recordings: list[Path], out: Path, progress: bool = True) -> Path:
    """Calibrate an aligned zoo checkpoint for its user from `recordings`; write it to `out`."""
    from edgebci.train import calibrate_checkpoint
    from edgebci.zoo import load_checkpoint, save_checkpoint
    if source.suffix != ".pt":
        raise ConfigError(f"only zoo checkpoints (.pt) are calibrated; {source.name} is a {source.suffix} graph")
    ckpt = calibrate_checkpoint(load_checkpoint(source), [Path(p) for p in recordings])
    _stage(progress, f"[0/3] calibrated {source.name} for its user from {', '.join(Path(p).name for p in recordings)} "
                     f"({ckpt.summary['calibration']['n_windows']} windows, labels unused)")
    return save_checkpoint(ckpt, out)


def _load_image(out_dir: Path):
    from edgebci.firmware.build import FirmwareImage
    path = out_dir / "firmware" / "image.json"
    if not path.exists():
        raise ConfigError(f"{out_dir} has no built firmware ({path} is missing); run `edgebci compile` again")
    raw = json.loads(path.read_text())
    return FirmwareImage(**{k: (Path(v) if k.endswith("path") and v not in (None, "None") else v)
                            for k, v in raw.items()})


def sample_recordings() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("*.edf"))


def load_hil_windows(recordings: list[Path], manifest: dict, max_windows: int | None = None) -> Windows:
    parts = [extract_cue_windows(read_recording(p, tuple(manifest["channels"])), manifest["window_samples"],
                                 manifest["offset_samples"]) for p in recordings]
    windows = Windows.concat(parts)
    if abs(windows.fs_hz - manifest["fs_hz"]) > 1e-6:
        raise DataError(f"recordings are sampled at {windows.fs_hz} Hz but the decoder expects {manifest['fs_hz']} Hz: "
                        f"pass recordings at {manifest['fs_hz']} Hz or retrain the decoder at {windows.fs_hz} Hz")
    if max_windows is not None:
        if max_windows <= 0:
            raise ConfigError(f"--max-windows must be > 0, got {max_windows}")
        windows = Windows(windows.x[:max_windows], windows.y[:max_windows], windows.source[:max_windows],
                          windows.fs_hz, windows.channels)
    if len(windows) == 0:
        raise DataError(f"no imagery cue windows in {[str(p) for p in recordings]}: pass runs 4, 8 or 12 "
                        f"(left/right fist imagery)")
    return windows


def open_device(target: Target, image, out_dir: Path, port: str | None):
    from edgebci.hil.launch import open_port, start_process, start_qemu
    log = out_dir / "device.log"
    if port:
        return open_port(port, log_path=log)
    if target.kind == "linux":
        return start_process(image.path, log)
    if target.is_emulated:
        return start_qemu(target, image.path, log)
    raise ConfigError(f"{target.name} is a physical board: pass its serial port, e.g. --port /dev/ttyACM0")


@dataclass(frozen=True)
class RunSummary:
    """A finished HIL run: its report and where it was written."""
    report: dict
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        return bool(self.report["ok"])


@dataclass(frozen=True)
class HilSummary(RunSummary):
    def summary_line(self) -> str:
        r = self.report
        w, a, lat, acc = r["windows"], r["agreement"], r["latency"], r["accuracy"]
        lat_txt = f"{lat['metric']} median {lat['median']:,.0f}" if "median" in lat else "no latency"
        lb = r.get("latency_budget")
        if lb and lb["total_ms"] is not None:
            lat_txt += (f"; latency budget {lb['total_ms']:.0f} ms (group delay {lb['filter_group_delay_ms']:.1f} + "
                        f"hop {lb['hop_ms']:.0f} + compute {lb['compute_ms']:.1f})")
        return (f"{'PASS' if self.ok else 'FAIL'} {r['target']['name']}: {w['sent']} windows sent, "
                f"{w['decoded']} decoded, {w['retried']} retried, {w['failed']} failed; agreement with host "
                f"{a['same_class']}/{a['windows_compared']}; balanced accuracy {acc['device_balanced_accuracy']:.3f} "
                f"(chance {acc['chance']:.2f}); {lat_txt}; stack peak {r['memory']['stack_peak']['bytes']} B. "
                f"Report: {self.html_path}")


def check_host_cpu(manifest: dict) -> None:
    """Kernels built for "this CPU" (x86-64: mcpu resolved at compile time) run only on a CPU that has its
    instructions: refuse another machine's build before loading it (an illegal instruction kills the process)."""
    import platform
    kernels = manifest.get("kernels") or {}
    mtriple, mcpu = kernels.get("mtriple"), kernels.get("mcpu")
    if not (mtriple and mcpu) or mtriple.split("-")[0] != platform.machine():
        return
    target = _target_of(manifest)
    from edgebci.targets import HOST_MCPU
    if target.llvm_mcpu != HOST_MCPU:
        return
    from tvm.target import codegen
    here = codegen.llvm_get_system_cpu()
    if here != mcpu:
        raise ConfigError(f"this folder's kernels were compiled for the CPU {mcpu!r} but this machine is {here!r}: "
                          f"run `edgebci compile ... --target {target.name}` again on this machine")


def hil_and_report(compiled_dir: Path, recordings: list[Path] | None, out_dir: Path, port: str | None = None,
                   max_windows: int | None = None, progress: bool = True) -> HilSummary:
    from edgebci.hil.runner import HilRun, HostReference, save_run, stream_windows
    from edgebci.report import build_report, write_report
    compiled = CompiledModel.load(compiled_dir)
    manifest = read_manifest(compiled_dir, "compiled-model")
    target = _target_of(manifest)
    image = _load_image(compiled_dir)
    check_host_cpu(manifest)
    windows = load_hil_windows(recordings or sample_recordings(), manifest, max_windows)
    host_lib = next((compiled_dir / "host").glob("*.so"), None)
    if host_lib is None:
        raise ConfigError(f"{compiled_dir}/host has no reference library; run `edgebci compile` again")
    reference = HostReference(host_lib, compiled.n_classes, HOST_ENTRY)
    out_dir.mkdir(parents=True, exist_ok=True)
    _stage(progress, f"HIL on {target.name}{' via ' + port if port else ''}: {len(windows)} windows")
    with open_device(target, image, out_dir, port) as device:
        info = device.link.hello()
        _check_device(info, compiled)
        outcomes = stream_windows(device.link, windows, reference, progress)
        link_stats = _link_stats(device.link)
    run = HilRun(_plain(info), outcomes, link_stats, tuple(manifest["classes"]))
    save_run(run, out_dir / "windows.json")
    report = build_report(run, compiled, image, target, manifest, emulated=port is None)
    json_path, html_path = write_report(report, out_dir)
    return HilSummary(report, json_path, html_path)


def _link_stats(link) -> dict:
    """The device's STATS (frames, stack high-water mark, errors by code) beside the host's link counters."""
    try:
        stats = link.stats()
        device_stats = {"frames_ok": stats.frames_ok, "stack_used": stats.stack_used,
                        "errors": {getattr(code, "name", str(code)): n for code, n in stats.errors.items()}}
    except LinkError as e:
        device_stats = {"error": str(e)}
    return {"device": device_stats, "host": _plain(link.counters)}


def _plain(obj):
    """Dataclasses (DeviceInfo, stats) as JSON-ready dicts."""
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def _check_device(info, compiled: CompiledModel) -> None:
    got = (info.n_ch, info.n_samp, info.model_id)
    want = (compiled.n_channels, compiled.n_samples, compiled.model_id)
    if got != want:
        raise ConfigError(f"the device runs a different model (channels, samples, id) = {got}, expected {want}: "
                          f"flash the firmware from {compiled.out_dir / 'firmware'}")


@dataclass(frozen=True)
class StreamSummary(RunSummary):
    def summary_line(self) -> str:
        r = self.report
        s, d, ex, acc, lb = r["stream"], r["decisions"], r["filter_bit_exact"], r["accuracy"], r["latency_budget"]
        comp = lb["compute"]
        comp_txt = f"{comp['metric']} median {comp['median']:,.0f} per hop" if "median" in comp else "no compute figure"
        total = f"{lb['total_ms']:.0f} ms" if lb["total_ms"] is not None else "n/a"
        return (f"{'PASS' if self.ok else 'FAIL'} {r['target']['name']} stream: {s['recordings']} recordings, "
                f"{s['samples_sent']} samples in {s['chunks']} chunks ({s['acked']} acked, {s['retried']} retried, "
                f"{s['failed']} failed, {s['samples_lost']} samples lost); filter bit-exact on "
                f"{ex['chunks_equal']}/{ex['chunks_checked']} chunks; decisions {d['received']}/{d['expected']} hops; "
                f"agreement with host {r['agreement']['same_class']}/{r['agreement']['decisions_compared']}; "
                f"balanced accuracy {acc['device_balanced_accuracy']:.3f} on {acc['labelled_decisions']} cue-aligned "
                f"decisions (chance {acc['chance']:.2f}); latency budget {total} = group delay "
                f"{lb['filter_group_delay_ms']:.1f} ms + hop {lb['hop_ms']:.0f} ms + compute ({comp_txt}). "
                f"Report: {self.html_path}")


def hil_stream_and_report(compiled_dir: Path, recordings: list[Path] | None, out_dir: Path, port: str | None = None,
                          pace: str = "max", chunk_samples: int | None = None, filter_state: str = "from-rest",
                          progress: bool = True) -> StreamSummary:
    """Stream whole recordings through the device's streaming decoder and report (see edgebci.hil.stream)."""
    from tqdm import tqdm

    from edgebci.frontend import FrontEnd, quantize_frontend
    from edgebci.hil.stream import FILTER_STATES, PACES, HostStream, StreamRun, save_stream_run, stream_recording
    from edgebci.report.stream import build_stream_report, write_stream_report
    if pace not in PACES:
        raise ConfigError(f"--pace must be one of {PACES}, got {pace!r}")
    if filter_state not in FILTER_STATES:
        raise ConfigError(f"--filter-state must be one of {tuple(FILTER_STATES)}, got {filter_state!r}")
    compiled = CompiledModel.load(compiled_dir)
    manifest = read_manifest(compiled_dir, "compiled-model")
    target = _target_of(manifest)
    image = _load_image(compiled_dir)
    check_host_cpu(manifest)
    window, hop, offset = manifest["window_samples"], manifest["hop_samples"], manifest["offset_samples"]
    chunk = min(hop, window) if chunk_samples is None else chunk_samples
    recs = [read_recording(p, tuple(manifest["channels"])) for p in (recordings or sample_recordings())]
    for rec in recs:
        if abs(rec.fs_hz - manifest["fs_hz"]) > 1e-6:
            raise DataError(f"{rec.path.name} is sampled at {rec.fs_hz} Hz but the decoder expects "
                            f"{manifest['fs_hz']} Hz: pass recordings at {manifest['fs_hz']} Hz")
    fixed = quantize_frontend(FrontEnd.from_dict(manifest["frontend"]))
    host_lib = next((compiled_dir / "host").glob("*.so"), None)
    if host_lib is None:
        raise ConfigError(f"{compiled_dir}/host has no reference library; run `edgebci compile` again")
    host = HostStream(host_lib, compiled.n_classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(r.samples.shape[1] for r in recs)
    _stage(progress, f"HIL stream on {target.name}{' via ' + port if port else ''}: {len(recs)} recordings, "
                     f"{total} samples, hop {hop}, window {window}, chunks of {chunk}, pace {pace}, "
                     f"decisions on the window filtered {filter_state}")
    with open_device(target, image, out_dir, port) as device:
        info = device.link.hello()
        _check_device(info, compiled)
        streams = []
        with tqdm(total=total, desc="stream", unit="sample", disable=not progress) as bar:
            for rec in recs:
                streams.append(stream_recording(device.link, rec, fixed, host, window, offset, hop, chunk, pace, bar,
                                                FILTER_STATES[filter_state]))
        link_stats = _link_stats(device.link)
    run = StreamRun(_plain(info), streams, link_stats, tuple(manifest["classes"]), hop, window, offset, chunk, pace,
                    filter_state)
    save_stream_run(run, out_dir / "stream.json")
    report = build_stream_report(run, compiled, image, target, manifest, emulated=port is None)
    json_path, html_path = write_stream_report(report, run, out_dir)
    return StreamSummary(report, json_path, html_path)


def run_demo(out_dir: Path, progress: bool = True) -> HilSummary:
    """Compile the bundled checkpoint for the default emulated board and HIL-run the bundled sample.

    The sample's first run (S015R04) calibrates the decoder's alignment for this person, without its labels;
    the second (S015R08) is decoded on the board.
    """
    compiled_dir = out_dir / "compiled"
    from edgebci.zoo import load_checkpoint
    calibration, decoded = demo_recordings()
    aligned = load_checkpoint(BUNDLED_CHECKPOINT).alignment != "none"
    compile_for_target(BUNDLED_CHECKPOINT, DEFAULT_TARGET, compiled_dir, progress,
                       calibration=calibration if aligned else None)
    return hil_and_report(compiled_dir, decoded, out_dir, progress=progress)


def demo_recordings() -> tuple[list[Path], list[Path]]:
    """(calibration recordings, recordings to decode) of the bundled sample."""
    return [SAMPLE_DIR / "S015R04.edf"], [SAMPLE_DIR / "S015R08.edf"]
