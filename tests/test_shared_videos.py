"""The registry finds every file of ../shared/videos/manifest.json, intact, and probe agrees."""

import pytest

import cvload
from tests import shared_videos as sv
from tests.mc_reference import assert_p_residuals_exact

pytestmark = pytest.mark.needs_shared

ALL = sv.names()
VIDEOS = [n for n in ALL if "reference_motion_vectors_for" not in sv._load()[n].facts] if ALL else []


def test_registry_covers_the_manifest():
    entries = sv.entries()
    assert len(entries) == 17
    assert {e.name for e in entries} >= {
        "mv_extractor/vid_h264.mp4", "mv_extractor/vid_h264.264", "decord/corrupted.mp4",
        "libwebm/fixed_lacing_bad_lace_size.mkv", "torchcodec/nasa_13013.mp4",
    }


@pytest.mark.parametrize("name", ALL or ["<absent>"])
def test_file_present_and_sha256_matches(name):
    entry = sv.get(name) if name != "<absent>" else sv.entries()
    assert entry.path.is_file(), f"{entry.path} listed in the manifest but missing"
    assert entry.path.stat().st_size == entry.bytes
    assert sv.sha256(entry.path) == entry.sha256, f"{entry.path} differs from the manifest"


@pytest.mark.parametrize("name", VIDEOS or ["<absent>"])
def test_probe_agrees_with_manifest(name):
    entry = sv.get(name) if name != "<absent>" else sv.entries()
    if entry.packets == 0 or (entry.decoded_frames == 0 and entry.errors):
        with pytest.raises(cvload.errors.CorruptVideoError, match=entry.path.name):
            cvload.probe(entry.path)
        return
    stream = entry.facts.get("video_stream_index", int(entry.streams[[s.split(':')[1] for s in entry.streams].index('video')].split(':')[0]))
    info = cvload.probe(entry.path, stream=stream)
    assert info.codec == {"libdav1d": "av1"}.get(entry.codec, entry.codec)
    assert f"{info.width}x{info.height}" == entry.size
    assert info.num_frames == entry.packets
    assert info.stream_index == stream
    assert info.declared_frames == entry.declared_frames
    if entry.decoded_frames == entry.packets:  # decodable files: structure matches
        assert len(info.keyframes) == entry.keyframes
        assert info.has_b_frames == ("B" in entry.pict_types)
        assert sum(info.gop_lengths) == info.num_frames


@pytest.mark.parametrize("name", VIDEOS or ["<absent>"])
def test_every_stream_of_every_decodable_file(name):
    """All streams, plain, accumulated and with motion from wherever it can come, on
    every real file: a clean clip or a cvload error, never anything else (a 50x50 file
    once crashed the residual kernels: PyAV pads its RGB rows)."""
    entry = sv.get(name) if name != "<absent>" else sv.entries()
    try:
        info = cvload.probe(entry.path)
    except cvload.CvloadError:
        return  # the broken files: their errors are tested above and in test_errors
    frames = max(1, min(6, info.num_frames - 1))
    for options in (dict(mv_source="auto"), dict(accumulate=True)):
        try:
            clip = cvload.read_clip(entry.path, start=0, num_frames=frames, info=info,
                                    **options)
        except (cvload.errors.NoMotionVectorsError, cvload.errors.CorruptVideoError):
            continue  # no exported vectors for accumulate, or a file broken further on
        assert clip.rgb.shape == (frames, info.height, info.width, 3)
        assert clip.residual.shape == clip.rgb.shape, options
        if not options.get("accumulate") and info.exports_motion_vectors:
            # the residual of every P-frame, exactly, against an independent reference
            assert_p_residuals_exact(entry.path, clip, stream=info.stream_index)
