"""records.encode_example and writer.frame_record write tf.Example / TFRecord bytes without
TensorFlow: TensorFlow itself must read them back exactly."""
import numpy as np

from maskrcnn_toolkit.core.dataset_folder import DatasetFolder
from maskrcnn_toolkit.dataset_tools.records import encode_example
from maskrcnn_toolkit.dataset_tools.writer import ShardedWriter, crc32c, frame_record


def _kwargs(n):
    rng = np.random.default_rng(n)
    return dict(image_bytes=bytes(rng.integers(0, 256, 3000 + 997 * n, dtype=np.uint8)),
                image_format="jpeg", height=480, width=640, image_id=10 ** n,
                file_name=f"dir/ä_{n}.jpg",
                boxes_xyxy_px=rng.random((n, 4)) * 400, class_ids=list(range(1, n + 1)),
                class_names=[f"class {k}" for k in range(n)], is_crowd=[k % 2 for k in range(n)],
                areas=(rng.random(n) * 1e5).tolist(),
                mask_pngs=[bytes([k]) * (200 * k) for k in range(n)])


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    rng = np.random.default_rng(0)
    # long inputs (numpy lanes) agree with the byte-at-a-time path, at awkward lengths
    for n in (1024, 1025, 4099, 85_003, 300_000):
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        want = 0xFFFFFFFF
        for b in data:
            for _ in range(8):
                want = ((want >> 1) ^ 0x82F63B78) if (want ^ b) & 1 else want >> 1
                b >>= 1
        assert crc32c(data) == want ^ 0xFFFFFFFF, n


def test_example_and_tfrecord_bytes_read_by_tensorflow(tmp_path):
    import tensorflow as tf
    examples = [encode_example(**_kwargs(n)) for n in (0, 1, 3, 12)]
    for n, ex in zip((0, 1, 3, 12), examples):
        kw = _kwargs(n)
        b = np.asarray(kw["boxes_xyxy_px"], np.float64).reshape(-1, 4)

        def feat(kind, values):
            return tf.train.Feature(**{kind: getattr(tf.train, kind.title().replace("_", ""))(
                value=values)})
        want = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": feat("bytes_list", [kw["image_bytes"]]),
            "image/format": feat("bytes_list", [b"jpeg"]),
            "image/height": feat("int64_list", [480]), "image/width": feat("int64_list", [640]),
            "image/source_id": feat("bytes_list", [str(10 ** n).encode()]),
            "image/filename": feat("bytes_list", [kw["file_name"].encode()]),
            "image/object/bbox/xmin": feat("float_list", b[:, 0] / 640),
            "image/object/bbox/ymin": feat("float_list", b[:, 1] / 480),
            "image/object/bbox/xmax": feat("float_list", b[:, 2] / 640),
            "image/object/bbox/ymax": feat("float_list", b[:, 3] / 480),
            "image/object/class/label": feat("int64_list", kw["class_ids"]),
            "image/object/class/text": feat("bytes_list", [c.encode() for c in kw["class_names"]]),
            "image/object/is_crowd": feat("int64_list", kw["is_crowd"]),
            "image/object/area": feat("float_list", kw["areas"]),
            "image/object/mask": feat("bytes_list", kw["mask_pngs"]),
        }))
        assert tf.train.Example.FromString(ex) == want, n
    # Framing: byte-identical to TensorFlow's own writer, and read back (checksums verified).
    ref = tmp_path / "ref.tfrecord"
    with tf.io.TFRecordWriter(str(ref)) as w:
        for ex in examples:
            w.write(ex)
    with ShardedWriter(tmp_path, "train", 1) as w:
        for ex in examples:
            w.write(frame_record(ex))
    ours = DatasetFolder(tmp_path).shards("train")
    assert ours[0].read_bytes() == ref.read_bytes()
    back = [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in ours])]
    assert back == examples
