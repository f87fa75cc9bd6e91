"""The final remux: the colorized segments plus the input's audio and subtitle packets,
copied where the container allows, transcoded where it does not."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from ...core.errors import TintError
from ...core.files import atomic_write
from .decode import _has_codec
from .encode import OutputSpec, _muxer_options, _supported
from .formats import _av_reason, _log, import_av
from .resume import WorkDir


def assemble(work: WorkDir, src: Path, dst: Path, spec: OutputSpec, warn=_log) -> dict:
    """Concatenate the segments' video packets and copy the input's audio and subtitle
    packets untouched into ``dst`` (atomically).  Audio the container cannot hold is
    re-encoded (and said so); subtitles it cannot hold are dropped (and said so)."""
    av = import_av()
    segs = [work.path / s["file"] for s in work.state["segments"]]
    if not segs:
        raise TintError(f"{src}: no video frame could be decoded")
    summary = {"audio_copied": 0, "audio_reencoded": 0, "subtitles_copied": 0, "dropped": 0}

    def write(tmp):
        inp = av.open(str(src), "r")
        out = av.open(str(tmp), "w", format=spec.format,
                      options=_movflags(spec.format) | _muxer_options(spec.format, _seg_tb(segs[0])))
        try:
            first = av.open(str(segs[0]), "r")
            vout = out.add_stream_from_template(first.streams.video[0])
            first.close()
            # the input's frame rate as the container's (Matroska read a segment's 1/1000 s
            # time base back as 1000 fps; timestamps were right either way)
            vin = inp.streams.video[0]
            rate = vin.average_rate or getattr(vin, "guessed_rate", None)
            if rate:
                vout.codec_context.framerate = rate
            supported = _supported(out, spec.format)
            copies, transcoders = {}, {}
            for s in inp.streams:
                if s.type not in ("audio", "subtitle"):
                    if s.type != "video" or s.index != inp.streams.video[0].index:
                        warn(f"{src.name}: {s.type} stream #{s.index} ({_codec_name(s)}) not carried over")
                        summary["dropped"] += 1
                    continue
                name = _codec_name(s)
                if name in supported and _copy_ok(av, spec.format, src, s.index):
                    copies[s.index] = out.add_stream_from_template(s)
                    summary["audio_copied" if s.type == "audio" else "subtitles_copied"] += 1
                elif s.type == "audio":
                    transcoders[s.index] = _AudioTranscoder(av, out, s, spec.audio_fallback)
                    warn(f"{src.name}: audio stream #{s.index} ({name}) cannot go into "
                         f"{dst.suffix}; re-encoding it to {transcoders[s.index].codec}")
                    summary["audio_reencoded"] += 1
                else:
                    warn(f"{src.name}: subtitle stream #{s.index} ({name}) cannot go into "
                         f"{dst.suffix}; dropped (use .mkv to keep it)")
                    summary["dropped"] += 1
            streams = [inp.streams[i] for i in (*copies, *transcoders)]
            last_dts: dict = {}
            for pkt, ostream in _interleave(_segment_packets(av, segs, vout),
                                            _input_packets(av, inp, streams, copies, transcoders, warn)):
                if ostream is None:                   # already encoded and muxed by a transcoder
                    continue
                _fix_dts(pkt, ostream, last_dts)
                pkt.stream = ostream
                out.mux(pkt)
            for t in transcoders.values():
                t.flush()
        finally:
            out.close()
            inp.close()
    atomic_write(dst, write)
    return summary


def _copy_ok(av, fmt: str, src: Path, index: int, scan: int = 2000) -> bool:
    """Can stream ``index`` of ``src`` be copied into a ``fmt`` file?  Tried for real with
    its first packet in memory: the codec list alone misses cases such as PCM without a
    channel layout in MP4."""
    import io
    try:
        with av.open(str(src), "r") as probe:
            s = probe.streams[index]
            pkt = None
            for i, p in enumerate(probe.demux(s)):
                if p.size:
                    pkt = p
                    break
                if i >= scan:
                    break
            out = av.open(io.BytesIO(), "w", format=fmt)
            try:
                o = out.add_stream_from_template(s)
                if pkt is not None:
                    pkt.stream = o
                    out.mux(pkt)
            finally:
                out.close()
        return True
    except (av.error.FFmpegError, ValueError, EOFError):
        return False


def _movflags(fmt: str) -> dict:
    # moov at the front: the file plays while it downloads
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}


def _seg_tb(seg: Path) -> Fraction:
    av = import_av()
    with av.open(str(seg), "r") as c:
        return Fraction(c.streams.video[0].time_base)


def _codec_name(s) -> str:
    """The codec's canonical name (``mp3``, ``subrip``), not its decoder's (``mp3float``, ``srt``)."""
    cc = getattr(s, "codec_context", None)
    codec = getattr(cc, "codec", None) if cc is not None else None
    return (getattr(codec, "canonical_name", None) or getattr(codec, "name", None)
            or (cc.name if cc is not None else None) or "unknown")


def _time(pkt) -> float:
    t = pkt.dts if pkt.dts is not None else pkt.pts
    return float(t * pkt.time_base) if t is not None and pkt.time_base else 0.0


def _segment_packets(av, segs, vout):
    for seg in segs:
        with av.open(str(seg), "r") as c:
            vs = c.streams.video[0]
            for pkt in c.demux(vs):
                if pkt.size:
                    yield _time(pkt), pkt, vout


def _input_packets(av, inp, streams, copies, transcoders, warn):
    if not streams:
        return
    packets = inp.demux(streams)
    while True:
        try:
            pkt = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, EOFError) as e:     # a truncated input: keep what was read
            warn(f"{Path(inp.name).name}: audio/subtitles end early ({_av_reason(e)})")
            return
        if not pkt.size:                                   # end-of-stream marker; flush() handles it
            continue
        i = pkt.stream.index
        if i in copies:
            yield _time(pkt), pkt, copies[i]
        else:
            transcoders[i].feed(pkt)
            yield _time(pkt), pkt, None


def _interleave(a, b):
    """Merge two time-ordered (time, packet, stream) iterators, earliest first."""
    import heapq
    for t, pkt, stream in heapq.merge(a, b, key=lambda x: x[0]):
        yield pkt, stream


def _fix_dts(pkt, ostream, last: dict) -> None:
    """Guard against a non-increasing dts (broken inputs): the muxer would refuse it."""
    if pkt.dts is None or pkt.time_base is None:
        return
    prev = last.get(ostream.index)
    if prev is not None and pkt.dts * pkt.time_base <= prev:
        new = int(prev / pkt.time_base) + 1
        if pkt.pts is not None and new > pkt.pts:
            pkt.pts = new
        pkt.dts = new
    last[ostream.index] = pkt.dts * pkt.time_base


class _AudioTranscoder:
    """Decode one audio stream and encode it with the container's fallback codec."""

    def __init__(self, av, out, s, candidates):
        codec = next((c for c in candidates if _has_codec(av, c, "w")), None)
        if codec is None:
            raise TintError(f"audio stream #{s.index} ({_codec_name(s)}) needs re-encoding but "
                            f"this FFmpeg build has none of {', '.join(candidates)}")
        self.codec = codec
        rate = s.codec_context.sample_rate or 48000
        if codec in ("libopus", "opus"):
            rate = 48000
        self.stream = out.add_stream(codec, rate=rate)
        self.stream.layout = "mono" if s.codec_context.channels == 1 else "stereo"
        self.stream.format = av.codec.Codec(codec, "w").audio_formats[0].name
        self.stream.bit_rate = 192_000 if codec == "aac" else 128_000
        self.out = out
        self.decoder = s.codec_context
        self.start: Fraction | None = None

    def feed(self, pkt):
        self._encode(self.decoder.decode(pkt))

    def flush(self):
        self._encode(self.decoder.decode(None))
        self._mux(self.stream.encode(None))

    def _encode(self, frames):
        for f in frames:
            if self.start is None:                    # the encoder counts from 0: keep the start time
                self.start = f.pts * f.time_base if f.pts is not None and f.time_base else Fraction(0)
            f.pts = None
            self._mux(self.stream.encode(f))

    def _mux(self, packets):
        for p in packets:
            shift = int(round((self.start or 0) / p.time_base)) if p.time_base else 0
            if p.pts is not None:
                p.pts += shift
            if p.dts is not None:
                p.dts += shift
            self.out.mux(p)
