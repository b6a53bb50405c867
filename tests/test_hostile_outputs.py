"""Output names the file system refuses (issue: nothing lost on the new surfaces), reproduced first: one line,
nothing written, never a traceback."""

import pytest

from flowkit.errors import WriteError
from flowkit.runtime.checkpoint import write_atomically
from tests.helpers import run_cli


def test_a_valid_long_name_writes_although_its_temporary_name_would_be_too_long(tmp_path):
    path = tmp_path / ("y" * 250 + ".npy")  # 254 characters: a legal name; '.NAME.tmp-PID-HEX.npy' is not
    write_atomically(path, lambda p: p.write_bytes(b"ok"))
    assert path.read_bytes() == b"ok" and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("name", ["x" * 300 + ".npy", "d" * 5000 + "/x.npy"], ids=["file-300", "folder-5000"])
def test_a_name_too_long_for_the_file_system_is_one_write_error(tmp_path, name):
    with pytest.raises(WriteError, match="File name too long"):
        write_atomically(tmp_path / name, lambda p: p.write_bytes(b"ok"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["sample", "ckpt=nope", "out=" + "x" * 5000 + ".npy"],
    ["train", "data.path=" + "x" * 5000 + ".npy", "run_root=runs"],
    ["train", "data.target=folder:" + "x" * 5000, "run_root=runs"],
    ["train", "resume=" + "x" * 5000],
], ids=["sample-out", "data.path", "folder", "resume"])
def test_a_5000_character_name_is_one_line_exit_2(tmp_path, args):
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-300:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[:300]
    assert not (tmp_path / "runs").exists()


def test_the_api_says_a_name_too_long_as_a_config_error(tmp_path):
    import flowkit
    from flowkit.errors import ConfigError

    for call in (lambda: flowkit.load(tmp_path / ("z" * 5000)),
                 lambda: flowkit.train("rectified", data={"path": str(tmp_path / ("z" * 5000 + ".npy"))},
                                       run_root=str(tmp_path / "runs"))):
        with pytest.raises(ConfigError, match=r"\(5,0\d\d characters\)': file name too long for the file system"):
            call()
    assert not (tmp_path / "runs").exists()
