import errno
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import copy_with_wrong_hidden_size
from toolkit.artifact import FORMAT_VERSION, ModelMeta, load_model_dir, save_model_dir
from toolkit.errors import ModelDirError
from toolkit.predict import Predictor


def write(path, extra_files=None, **meta):
    return save_model_dir(path, ModelMeta(task="classify", model_config={"x": 1}, labels=["a", "b"], tokenizer={},
                                          **meta), state_dict={"w": torch.ones(2, 3)},
                          json_files={"vocab.json": {"tokens": ["<pad>", "<unk>"]}}, extra_files=extra_files)


def test_round_trip(tmp_path):
    path = write(tmp_path / "m", training={"metrics": {"acc": 0.9}})
    loaded = load_model_dir(path)
    assert loaded.meta.format_version == FORMAT_VERSION and loaded.meta.task == "classify"
    assert loaded.meta.labels == ["a", "b"] and loaded.meta.training["metrics"] == {"acc": 0.9}
    assert torch.equal(loaded.state_dict["w"], torch.ones(2, 3))
    assert loaded.json_file("vocab.json") == {"tokens": ["<pad>", "<unk>"]}
    assert set(loaded.meta.files) == {"model.safetensors", "vocab.json"}
    assert (loaded.meta.provenance, loaded.meta.init_from, loaded.meta.backends) == ({}, [], {})


def test_rewrite_in_place_replaces_atomically(tmp_path):
    write(tmp_path / "m")
    save_model_dir(tmp_path / "m", ModelMeta("classify", {"x": 2}, None, {}), state_dict={"w": torch.zeros(1)})
    assert load_model_dir(tmp_path / "m").meta.model_config == {"x": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or old copies left behind
    (tmp_path / "notes").mkdir()
    with pytest.raises(ModelDirError, match="not a model directory; refusing to overwrite"):
        write(tmp_path / "notes")


def test_a_crash_between_the_two_renames_of_a_swap_is_recovered(tmp_path):
    write(tmp_path / "m", training={"metrics": {"acc": 0.5}})
    (tmp_path / "m").rename(tmp_path / ".m.old-12345")  # the old model was moved aside, the new one never arrived
    assert load_model_dir(tmp_path / "m").meta.training["metrics"] == {"acc": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_missing_directory_and_meta(tmp_path):
    with pytest.raises(ModelDirError, match="model directory not found"):
        load_model_dir(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match=r"meta\.json is missing"):
        load_model_dir(tmp_path / "empty")


def test_missing_file_is_named(tmp_path):
    path = write(tmp_path / "m")
    (path / "vocab.json").unlink()
    with pytest.raises(ModelDirError, match=r"incomplete: vocab\.json is missing"):
        load_model_dir(path)


def test_corrupt_weights_are_detected(tmp_path):
    path = write(tmp_path / "m")
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelDirError, match=r"model\.safetensors is corrupt"):
        load_model_dir(path)


def test_corrupt_meta_and_newer_format(tmp_path):
    path = write(tmp_path / "m")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ModelDirError, match=r"newer than this toolkit .* upgrade bilstm-toolkit"):
        load_model_dir(path)
    (path / "meta.json").write_text(json.dumps({**meta, "task": "summarise"}))
    with pytest.raises(ModelDirError, match="unknown task 'summarise'"):
        load_model_dir(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(ModelDirError, match=r"meta\.json is corrupt"):
        load_model_dir(path)


@pytest.mark.parametrize(("files", "message"), [
    ({"../../etc/passwd": {"sha256": "0", "bytes": 1}}, "lists a file outside the directory: '../../etc/passwd'"),
    ({"/etc/passwd": {"sha256": "0", "bytes": 1}}, "lists a file outside the directory"),
    ({"vocab.json": {"sha256": "0"}}, "the entry for 'vocab.json' needs a sha256 string and a bytes count"),
    (["vocab.json"], "'files' must be an object"),
])
def test_malformed_file_lists_are_refused_before_any_file_is_touched(tmp_path, files, message):
    from toolkit.artifact import read_meta

    path = write(tmp_path / "m")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "files": files}))
    with pytest.raises(ModelDirError, match=re.escape(message)):
        read_meta(path)  # what the spaCy component's to_disk copies from


def test_weights_that_do_not_fit_the_config_are_named(textcat_model_dir, tmp_path):
    copy = copy_with_wrong_hidden_size(textcat_model_dir, tmp_path / "copy")
    with pytest.raises(ModelDirError, match=r"weights do not match the model config.*wrong shapes"):
        Predictor.load(copy, device="cpu")


def test_no_pickle_in_the_model_directory(textcat_model_dir):
    names = {p.name for p in textcat_model_dir.iterdir()}
    assert names == {"meta.json", "vocab.json", "model.safetensors"}
    weights = (textcat_model_dir / "model.safetensors").read_bytes()
    header_size = int.from_bytes(weights[:8], "little")  # safetensors: u64 header length, then a JSON header
    header = json.loads(weights[8:8 + header_size])
    tensors = [entry for key, entry in header.items() if key != "__metadata__"]
    assert tensors and all(set(entry) >= {"dtype", "shape", "data_offsets"} for entry in tensors)
    for name in ("meta.json", "vocab.json"):
        json.loads((textcat_model_dir / name).read_text())  # plain JSON, nothing else


def _rewrite_meta(path, change):
    meta = json.loads((path / "meta.json").read_text())
    change(meta)
    (path / "meta.json").write_text(json.dumps(meta))


def test_a_file_the_loader_needs_must_be_listed(textcat_model_dir, tmp_path):
    copy = Path(shutil.copytree(textcat_model_dir, tmp_path / "copy"))
    (copy / "vocab.json").unlink()
    _rewrite_meta(copy, lambda meta: meta["files"].pop("vocab.json"))
    with pytest.raises(ModelDirError, match=r"meta\.json does not list vocab\.json, which a 'classify' model needs"):
        Predictor.load(copy, device="cpu")
    shutil.copy(textcat_model_dir / "vocab.json", copy / "vocab.json")  # present but unlisted: still never read
    with pytest.raises(ModelDirError, match=r"does not list vocab\.json"):
        Predictor.load(copy, device="cpu")


def test_links_are_refused_even_with_the_right_checksum(textcat_model_dir, tmp_path):
    copy = Path(shutil.copytree(textcat_model_dir, tmp_path / "copy"))
    outside = tmp_path / "elsewhere.json"
    shutil.move(copy / "vocab.json", outside)
    (copy / "vocab.json").symlink_to(outside)  # same bytes, so the checksum alone would pass
    with pytest.raises(ModelDirError, match=r"vocab\.json is a symbolic link"):
        Predictor.load(copy, device="cpu")
    (copy / "vocab.json").unlink()
    shutil.copy(outside, copy / "vocab.json")
    (copy / "meta.json").rename(tmp_path / "meta.json")
    (copy / "meta.json").symlink_to(tmp_path / "meta.json")
    with pytest.raises(ModelDirError, match=r"meta\.json is a symbolic link"):
        Predictor.load(copy, device="cpu")


def test_a_folder_read_whole_may_hold_only_listed_files(tmp_path):
    source = tmp_path / "config.json"
    source.write_text("{}")
    path = write(tmp_path / "m", extra_files={"transformer/config.json": source})
    assert load_model_dir(path).folder("transformer") == path / "transformer"
    (path / "transformer" / "tokenizer_config.json").write_text('{"auto_map": {}}')
    with pytest.raises(ModelDirError, match=r"holds files meta\.json does not list \(transformer/tokenizer_config"):
        load_model_dir(path).folder("transformer")


def test_a_full_disk_leaves_no_model_directory_and_keeps_an_old_one(tmp_path):
    from tests.test_cli_errors import tiny_disk
    from toolkit.errors import OutputError

    big = {"w": torch.ones(64, 1024)}  # 256 kB of weights
    with tiny_disk(tmp_path / "disk", "400k") as disk:
        meta = ModelMeta("classify", {"x": 1}, ["a", "b"], {})
        with pytest.raises(OutputError, match=rf"cannot write the model directory {disk / 'm'}: No space left on "
                                              "device; nothing was written there"):
            save_model_dir(disk / "m", meta, state_dict={"w": torch.ones(128, 1024)})  # 512 kB: does not fit
        assert list(disk.iterdir()) == []  # neither the directory nor its staging copy
        save_model_dir(disk / "m", meta, state_dict=big)
        old = {item.name: item.read_bytes() for item in (disk / "m").iterdir()}
        with pytest.raises(OutputError, match="a model already there is kept"):
            save_model_dir(disk / "m", meta, state_dict=big)  # a second copy beside the first does not fit
        assert {item.name: item.read_bytes() for item in (disk / "m").iterdir()} == old
        assert sorted(item.name for item in disk.iterdir()) == ["m"]
        assert torch.equal(load_model_dir(disk / "m").state_dict["w"], big["w"])


def test_a_swap_whose_second_rename_fails_puts_the_old_model_back(tmp_path, monkeypatch):
    """The rename of the new directory into place fails (injected: it needs a fault between two renames)."""
    import toolkit.artifact as artifact

    write(tmp_path / "m", training={"metrics": {"acc": 0.5}})
    real_replace = os.replace

    def replace(source, target):
        if ".tmp-" in str(source):  # the staging directory moving in as the model
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real_replace(source, target)

    monkeypatch.setattr(artifact.os, "replace", replace)
    with pytest.raises(artifact.OutputError, match="No space left on device"):
        write(tmp_path / "m", training={"metrics": {"acc": 0.9}})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # back in place now, not at the next load
    assert load_model_dir(tmp_path / "m").meta.training["metrics"] == {"acc": 0.5}


# --- one atomic file writer: report pages, the LM corpus cache, the batch job's progress record --------------------

def test_an_atomic_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    from toolkit.artifact import write_file_atomically

    target = tmp_path / "record.json"
    target.write_bytes(b"old")
    write_file_atomically(target, b"new content")
    assert target.read_bytes() == b"new content" and target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """With one fixed temporary name, one writer renamed the other's half-written file into place, or found it gone."""
    import threading

    from toolkit.artifact import write_file_atomically

    target = tmp_path / "record.json"
    contents = {name: name.encode() * 50_000 for name in ("a", "b")}
    failures: list[BaseException] = []
    seen: set[bytes] = set()

    def write_many(data: bytes) -> None:
        try:
            for _ in range(40):
                write_file_atomically(target, data)
                seen.add(target.read_bytes())
        except BaseException as error:  # collected and asserted below
            failures.append(error)

    threads = [threading.Thread(target=write_many, args=(data,)) for data in contents.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert seen <= set(contents.values())  # every read saw one writer's whole file, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_is_one_line_when_named(tmp_path):
    from tests.test_cli_errors import remount_read_only, tiny_disk
    from toolkit.artifact import write_file_atomically
    from toolkit.errors import OutputError

    with tiny_disk(tmp_path / "disk", "64k") as disk:
        target = disk / "record.json"
        write_file_atomically(target, b"committed")
        with pytest.raises(OutputError) as error:
            write_file_atomically(target, b"x" * 200_000, what=f"the record {target}", outcome="the last one is kept")
        assert str(error.value) == (f"cannot write the record {target}: No space left on device; the last one is kept: "
                                    "free some disk space or write it elsewhere, then run again")
        with pytest.raises(OSError) as raw:  # without a name the caller words it: the OSError itself
            write_file_atomically(target, b"x" * 200_000)
        assert raw.value.errno == errno.ENOSPC
        assert target.read_bytes() == b"committed" and sorted(p.name for p in disk.iterdir()) == ["record.json"]
        remount_read_only(disk)
        with pytest.raises(OutputError, match=r"Read-only file system: write it elsewhere, or make it writable, then"):
            write_file_atomically(target, b"new", what=f"the record {target}")
        assert target.read_bytes() == b"committed"


def test_torn_writes_of_one_file_are_removed_and_only_its_own(tmp_path):
    from toolkit.artifact import remove_torn_writes

    for name in (".out.progress.tmp-k1ll3d00", ".out.progress.lock.tmp-a1b2c3d4", ".out.progress2.tmp-a1b2c3d4",
                 "out.progress"):
        (tmp_path / name).write_text("x")
    assert remove_torn_writes(tmp_path / "out.progress") == [tmp_path / ".out.progress.tmp-k1ll3d00"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.progress.lock.tmp-a1b2c3d4",
                                                          ".out.progress2.tmp-a1b2c3d4", "out.progress"]


def test_an_io_error_is_one_line_that_says_to_check_the_disk():
    from toolkit.artifact import cannot_write

    error = cannot_write(OSError(errno.EIO, "Input/output error"), "the file x", elsewhere="write it elsewhere")
    assert str(error) == ("cannot write the file x: Input/output error: check the disk or write it elsewhere, then "
                          "run again")
