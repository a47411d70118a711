"""`distill train --images`: KD on folders of unlabeled images, alone or beside shards."""

import numpy as np
import pytest
import torch
from PIL import Image

import distill.cli as cli
from conftest import SIZE
from distill.data import DataError, ImageStream, readable_images


def image_folder(root, n=5):
    """n images of different sizes and kinds in nested folders, one damaged past its header, one
    file that is not an image at all."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"scene{i % 2}" / "frames"
        folder.mkdir(parents=True, exist_ok=True)
        size = (40 + 10 * i, 30 + 7 * i)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    jpeg = (root / "scene0" / "frames" / "0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])  # the header reads, the pixels do not
    (root / "notes.png").write_text("not an image")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


def test_image_folders_are_listed_recursively_and_bad_files_counted(tmp_path, capsys):
    root = image_folder(tmp_path / "photos")
    paths = readable_images(root)
    assert len(paths) == 6 and all(p.suffix in (".jpg", ".png") for p in paths)  # 5 + the truncated one
    assert "1 of 7 files unreadable, skipped: notes.png" in capsys.readouterr().err
    listing = tmp_path / "list.txt"
    listing.write_text("# my split\nphotos/scene0/frames/0.jpg\nphotos/scene1/frames/1.png\n")
    assert [p.name for p in readable_images(listing)] == ["0.jpg", "1.png"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.jpg").write_text("nope")
    with pytest.raises(DataError, match=r"no readable jpg/png photo among 1 file\(s\), e.g. x.jpg"):
        readable_images(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder of images or a .txt list"):
        readable_images(tmp_path / "nothing-here")


def test_an_image_stream_skips_files_it_cannot_decode_and_keeps_going(tmp_path, capsys):
    root = image_folder(tmp_path / "photos")
    stream = ImageStream(readable_images(root), SIZE.hw, augment=False)
    items = [item for _, item in zip(range(13), iter(stream))]  # two epochs and a bit
    assert len(items) == 13 and all(i["rgb"].shape == (3, *SIZE.hw) and not i["sim"] for i in items)
    assert "truncated.jpg: unreadable" in capsys.readouterr().err
    only_bad = ImageStream([tmp_path / "photos" / "truncated.jpg"], SIZE.hw)
    with pytest.raises(DataError, match="none of 1 images could be read"):
        next(iter(only_bad))


def test_batches_hold_the_asked_share_of_images_and_mixing_leaves_them_alone(tmp_path, synthetic_shards,
                                                                           teacher_file, train_config):
    from dataclasses import replace

    from distill.train import Distiller, make_loader

    root = image_folder(tmp_path / "photos")
    cfg = train_config(synthetic_shards, teacher_file, tmp_path / "run", images=[str(root)], images_share=0.5,
                       transform="off", batch_size=4)
    cfg = replace(cfg, mix={"prob": 1.0, "max_objects": 3})
    batch = next(iter(make_loader(cfg, SIZE.hw, readable_images(root))))
    assert batch["sim"].tolist() == [True, True, False, False]
    d = Distiller(cfg)
    d.train_step(batch)
    mixed = d.last_images["transformed"]
    assert torch.equal(mixed[2:], batch["rgb"][2:])  # images have no masks: neither pasted into nor from
    assert not torch.equal(mixed[:2], batch["rgb"][:2])
    with pytest.raises(ValueError, match="leaves 0 image"):
        replace(cfg, images_share=0.1)


def test_distill_train_on_images_alone(tmp_path, teacher_file, capsys):
    root = image_folder(tmp_path / "photos")
    out = tmp_path / "run"
    rc = cli.main(["train", "--images", str(root), "--teacher", str(teacher_file), "--out", str(out), "--steps", "2",
                   "--batch-size", "2", "--workers", "0", "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0 and (out / "student.pt").exists()
    assert "data: 2 of 2 images per batch from --images (6 files)" in captured.out
    assert cli.main(["train", "--teacher", str(teacher_file), "--out", str(tmp_path / "r2")]) == 2
    assert "--shards DIR and/or --images DIR" in capsys.readouterr().err
