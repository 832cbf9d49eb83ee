import pickle
import warnings

import pytest

from cvload import errors
from cvload.errors import (
    CorruptVideoError,
    CvloadError,
    EmptyVideoError,
    ShardError,
    SkipCounter,
    check_handler,
)


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (errors.CorruptVideoError, ValueError),
        (errors.EmptyVideoError, ValueError),
        (errors.UnsupportedCodecError, ValueError),
        (errors.NoMotionVectorsError, ValueError),
        (errors.ShardError, OSError),
        (errors.UnsafeShardError, OSError),
        (errors.CodecMismatchError, ValueError),
        (errors.CodecFileError, ValueError),
        (errors.VideoNotFoundError, FileNotFoundError),
        (errors.InvalidArgumentError, ValueError),
        (errors.MissingDependencyError, ImportError),
    ],
)
def test_every_error_is_both_cvload_and_builtin(cls, builtin):
    err = cls("went wrong", source="clip.mp4")
    assert isinstance(err, CvloadError) and isinstance(err, builtin)
    with pytest.raises(builtin):
        raise err


def test_message_names_source_frame_and_what_to_do():
    err = CorruptVideoError("decoding failed", source="/data/a.mp4", frame=28)
    text = str(err)
    assert text.startswith("/data/a.mp4 (frame 28): decoding failed")
    assert "handler='skip'" in text  # the default hint says what to do
    assert err.source == "/data/a.mp4" and err.frame == 28


def test_oserror_subclass_keeps_our_message():
    err = ShardError("member a.codes.npy is truncated", source="train-000001.tar")
    assert str(err).startswith("train-000001.tar: member a.codes.npy is truncated")


def test_bytes_source_is_described_not_dumped():
    err = EmptyVideoError("no frames", source=b"\x00" * 1000)
    assert "<1000 bytes in memory>" in str(err)


def test_errors_pickle_across_processes():
    err = CorruptVideoError("bad", source="x.mp4", frame=3, hint="fix it")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CorruptVideoError and str(back) == str(err) and back.frame == 3


def test_check_handler_lists_valid_values():
    assert check_handler("skip") == "skip"
    with pytest.raises(errors.InvalidArgumentError, match="'raise', 'warn' and 'skip'"):
        check_handler("ignore")


def test_skip_counter_policies():
    err = CorruptVideoError("bad", source="x.mp4")
    with pytest.raises(CorruptVideoError):
        SkipCounter("raise").handle(err)

    skip = SkipCounter("skip")
    skip.handle(err)
    skip.handle(EmptyVideoError("none", source="y.mp4"))
    skip.handle(err)
    assert skip.counts == {"CorruptVideoError": 2, "EmptyVideoError": 1} and skip.total == 3

    warn = SkipCounter("warn")
    with pytest.warns(RuntimeWarning, match="x.mp4"):
        warn.handle(err)
    assert warn.total == 1
    # survives pickling (DataLoader workers)
    back = pickle.loads(pickle.dumps(skip))
    assert back.counts == skip.counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back.handle(err)  # 'skip' never warns
    assert back.total == 4
