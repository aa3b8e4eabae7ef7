"""What a deployment needs: class names that travel with every model file, and an export that
a server uses as it is (raw uint8 images of any size, encoded JPEG/PNG bytes, class names)."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
import ensembles
import zoo
from safeio.checks import UserError
from tests.helpers import gif_bytes, tiny_data, tiny_model

NAMES = ["astronaut", "coffee", "chelsea", "rocket"]


@pytest.mark.all_backends
def test_class_names_travel_through_files_ensembles_and_snapshots(tmp_path):
    model = zoo.set_class_names(tiny_model(), NAMES)
    path = zoo.save_model(model, str(tmp_path / "m.keras"))
    assert "zoo.json" in zipfile.ZipFile(path).namelist()
    assert zoo.class_names(zoo.load_model(path)) == NAMES
    plain = keras.saving.load_model(path)  # Keras alone still loads the file
    np.testing.assert_allclose(plain.get_weights()[0], model.get_weights()[0])
    assert zoo.class_names(plain) is None

    # An ensemble takes its members' names (a member without names does not disagree).
    ensemble = ensembles.Ensemble([model, tiny_model()])
    assert zoo.class_names(ensemble) == NAMES
    zoo.save_model(ensemble, str(tmp_path / "e.keras"))
    assert zoo.class_names(ensembles.load(str(tmp_path / "e.keras"))) == NAMES

    # Snapshots are weights files: the architecture's names, or the ones given.
    model.save_weights(str(tmp_path / "snapshot-1.weights.h5"))
    snapshots = ensembles.from_snapshots(model, [str(tmp_path / "snapshot-1.weights.h5")])
    assert zoo.class_names(snapshots) == NAMES
    given = ensembles.from_snapshots(tiny_model, [str(tmp_path / "snapshot-1.weights.h5")],
                                     class_names=NAMES[::-1])
    assert zoo.class_names(given) == NAMES[::-1]


def test_class_names_that_disagree_or_do_not_fit_are_one_line():
    model = zoo.set_class_names(tiny_model(), NAMES)
    swapped = zoo.set_class_names(tiny_model(), ["astronaut", "chelsea", "coffee", "rocket"])
    with pytest.raises(UserError, match=r"^Member 1 \('tiny'\) names its classes differently "
                                        r"from member 0 \('tiny'\): class 1 is 'chelsea', not "
                                        r"'coffee'\."):
        ensembles.Ensemble([model, swapped])
    for names, message in ((NAMES[:3], r"tiny has 4 outputs, but 3 class names"),
                           (["a", "b", "a", "c"], r"must be distinct; \['a'\] appear"),
                           ("abcd", r"must be a list of non-empty strings"),
                           (["a", "", "b", "c"], r"must be a list of non-empty strings")):
        with pytest.raises(UserError, match=message):
            zoo.set_class_names(tiny_model(), names)
    with pytest.raises(UserError, match=r"must end in \.keras; received 'm\.h5'"):
        zoo.save_model(model, "m.h5")
    # An export's class_names.txt holds one a line: a break in a name shifted every name
    # after it. Refused there; a model (or a file saved before) keeps such names.
    for names, shown in ((["a", "b\nc", "d", "e"], "'b\\\\nc'"), (["a", "b", "c\u2028", "d"], "")):
        broken = zoo.set_class_names(tiny_model(), names)
        with pytest.raises(UserError, match=r"must be one line each; received " + shown):
            ensembles.export(broken, "unused_export")
    # Given to the export: an empty list was ignored (0..3 written), an array was NumPy's
    # "truth value of an array is ambiguous".
    with pytest.raises(UserError, match=r"tiny predicts 4 classes, but 0 class names"):
        ensembles.export(tiny_model(), "unused_export", class_names=[])
    with pytest.raises(UserError, match=r"tiny predicts 4 classes, but 3 class names"):
        ensembles.export(tiny_model(), "unused_export", class_names=np.array(NAMES[:3]))
    assert not os.path.exists("unused_export")


def test_train_records_the_class_names_in_its_checkpoints_and_config(tmp_path):
    result = zoo.train(tiny_model, tiny_data(), tiny_data(seed=1), epochs=1, verbose=0,
                       run_dir=str(tmp_path), class_names=NAMES, learning_rate=0.05)
    assert zoo.class_names(result.model) == NAMES
    for name in ("best.keras", "last.keras"):
        assert zoo.class_names(zoo.load_model(str(tmp_path / "checkpoints" / name))) == NAMES
    assert json.load(open(tmp_path / "config.json"))["class_names"] == NAMES


@pytest.mark.all_backends
def test_the_resize_mode_travels_through_files_ensembles_and_runs(tmp_path):
    """How a model's training images became inputs ("crop" or "squash") is kept as its
    class names are: in its file, in the ensembles, calibrations and MC dropout made of it,
    in snapshot ensembles, and in zoo.train's checkpoints and config.json."""
    squash = zoo.set_resize_mode(tiny_model(), "squash")
    path = zoo.save_model(squash, str(tmp_path / "m.keras"))
    assert zoo.resize_mode(zoo.load_model(path)) == "squash"
    assert json.loads(zipfile.ZipFile(path).read("zoo.json")) == {"resize": "squash"}
    named = zoo.set_class_names(zoo.set_resize_mode(tiny_model(), "squash"), NAMES)
    assert json.loads(zipfile.ZipFile(zoo.save_model(named, str(tmp_path / "n2.keras"))).read(
        "zoo.json")) == {"class_names": NAMES, "resize": "squash"}
    assert zoo.resize_mode(keras.saving.load_model(path)) is None  # Keras alone: loads
    assert zoo.resize_mode(zoo.load_model(zoo.save_model(tiny_model(),
                                                         str(tmp_path / "n.keras")))) is None

    ensemble = ensembles.Ensemble([tiny_model(), squash])  # one that records none agrees
    assert zoo.resize_mode(ensemble) == "squash"
    assert zoo.resize_mode(ensembles.load(zoo.save_model(
        ensemble, str(tmp_path / "e.keras")))) == "squash"
    assert zoo.resize_mode(ensembles.Ensemble([tiny_model(), tiny_model()])) is None
    assert zoo.resize_mode(ensembles.calibration.with_temperature(ensemble, 2.0)) == "squash"
    assert zoo.resize_mode(ensembles.calibration.with_temperature(squash, 2.0)) == "squash"
    inputs = keras.Input((8, 8, 3))
    dropped = keras.layers.Dropout(0.5)(keras.layers.Flatten()(inputs))
    dropout = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(dropped))
    assert zoo.resize_mode(ensembles.mc_dropout(zoo.set_resize_mode(dropout, "squash"),
                                                samples=2)) == "squash"
    assert zoo.resize_mode(ensembles.ensemble.with_member_outputs(ensemble)) == "squash"
    # An ensemble rebuilt from its members (reweighted), in memory and from its file, keeps
    # both; so does a GoogLeNet without its auxiliary heads.
    pair = ensembles.Ensemble([named, tiny_model()])
    for source in (pair, ensembles.load(zoo.save_model(pair, str(tmp_path / "p.keras")))):
        rebuilt = ensembles.Ensemble(ensembles.members_of(source), weights=[3, 1])
        assert (zoo.class_names(rebuilt), zoo.resize_mode(rebuilt)) == (NAMES, "squash")
    # A hand-made graph around CombineMembers (no member models) still loads.
    inputs = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten()(inputs)
    stacked = keras.layers.Concatenate(axis=1)([keras.layers.Reshape((1, 4))(
        keras.layers.Dense(4, activation="softmax")(flat)) for _ in range(2)])
    handmade = keras.Model(inputs, ensembles.CombineMembers("mean")(stacked))
    assert ensembles.load(zoo.save_model(handmade, str(tmp_path / "h.keras"))).output_shape \
        == (None, 4)
    aux = zoo.googlenet(input_shape=(79, 79, 3), classes=4, width=0.125, aux_logits=True)
    plain = zoo.without_aux(zoo.set_resize_mode(zoo.set_class_names(aux, NAMES), "squash"))
    assert (zoo.class_names(plain), zoo.resize_mode(plain)) == (NAMES, "squash")
    crop = zoo.set_resize_mode(tiny_model(), "crop")
    with pytest.raises(UserError, match=r"^Member 2 \('tiny'\) was trained on inputs made by "
                                        r"resize='crop', member 1 \('tiny'\) by "
                                        r"resize='squash': an ensemble's one input cannot be "
                                        r"both\."):
        ensembles.Ensemble([tiny_model(), squash, crop])

    squash.save_weights(str(tmp_path / "snapshot-1.weights.h5"))
    snapshot = [str(tmp_path / "snapshot-1.weights.h5")]
    assert zoo.resize_mode(ensembles.from_snapshots(squash, snapshot)) == "squash"
    assert zoo.resize_mode(ensembles.from_snapshots(tiny_model, snapshot, resize="crop")) \
        == "crop"

    run_dir = tmp_path / "run"
    result = zoo.train(tiny_model, tiny_data(), None, epochs=1, verbose=0,
                       run_dir=str(run_dir), resize="squash")
    assert zoo.resize_mode(result.model) == "squash"
    for name in ("best.keras", "last.keras"):
        assert zoo.resize_mode(zoo.load_model(str(run_dir / "checkpoints" / name))) == "squash"
    assert json.load(open(run_dir / "config.json"))["resize"] == "squash"

    whole = r"`resize` must be one of \('crop', 'squash'\); received 'whole'"
    with pytest.raises(UserError, match=whole):
        zoo.set_resize_mode(tiny_model(), "whole")
    # Given to training, a wrong one is refused before any work: no run directory, no
    # snapshot read, no teacher looked at.
    with pytest.raises(UserError, match=whole):
        zoo.train(tiny_model, tiny_data(), epochs=1, run_dir=str(tmp_path / "r2"),
                  resize="whole")
    assert not (tmp_path / "r2").exists()
    with pytest.raises(UserError, match=whole):
        ensembles.from_snapshots(tiny_model, str(tmp_path / "absent"), resize="whole")
    with pytest.raises(UserError, match=whole):
        ensembles.distill(None, None, tiny_data(), resize="whole")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "w.keras", "w") as out:
        for entry in source.namelist():
            out.writestr(entry, json.dumps({"resize": "whole"}) if entry == "zoo.json"
                         else source.read(entry))
    path = str(tmp_path / "w.keras")
    with pytest.raises(UserError, match=r"^Cannot load .*w\.keras: its zoo\.json is not this "
                                        r"project's class names, resize mode and input "
                                        r"preprocessing \(resize 'whole'\)"):
        zoo.load_model(path)


def _photo(height=300, width=451, seed=0):
    """A smooth RGB image with edges (a JPEG of noise would be all artefacts)."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    image = np.stack([128 + 100 * np.sin(x / rng.uniform(9, 30) + c) * np.cos(y / 23.0)
                      for c in range(3)], axis=-1)
    image[height // 3:height // 2, width // 4:width // 2] = rng.integers(0, 255, 3)
    return np.clip(image, 0, 255).astype("uint8")


@pytest.fixture(scope="module")
def photo_export(tmp_path_factory):
    """A 300x466 JPEG photo in an image folder; an ensemble of two members that take 33x33
    images, exported; and the probabilities `zoo evaluate --center-crop`'s pipeline gives
    (``data.load`` at the larger scale, centre crop). Resized to 38x59, its crop starts at
    column 13 (torchvision's one crop; two crops, to 38 then 33, start at 12)."""
    tmp_path = tmp_path_factory.mktemp("photo_export")
    keras.utils.set_random_seed(0)
    size = 33  # loaded with shorter side data.crop_scale(33) = 38, then the central 33x33
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 5, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(x))
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    member = zoo.set_class_names(keras.Model(inputs, outputs, name="small"), NAMES)
    member.layers[-1].set_weights([w * 20 for w in member.layers[-1].get_weights()])  # sharp
    ensemble = ensembles.Ensemble([member, zoo.set_class_names(tiny_model(size, 4), NAMES)])
    photo = _photo(300, 466)
    folder = tmp_path / "photos" / "test" / "chelsea"
    folder.mkdir(parents=True)
    jpeg = folder / "cat.jpg"
    jpeg.write_bytes(tf.io.encode_jpeg(photo, quality=90).numpy())
    test = data.load(str(tmp_path / "photos"), "test", batch_size=1, class_names=NAMES,
                     scale=data.crop_scale(size), center_crop=size)
    expected = ensemble.predict(test, verbose=0)
    assert np.ptp(expected) > 0.1  # the members do not all answer the same
    served_dir = str(tmp_path / "served")
    ensembles.export(ensemble, served_dir)
    return served_dir, jpeg, expected


@pytest.mark.all_backends
@pytest.mark.xdist_group("cold_python")
def test_the_export_serves_raw_images_and_encoded_bytes_as_zoo_evaluate_sees_them(
        photo_export, tmp_path, cold_python):
    """`zoo evaluate --center-crop`'s probabilities on the photo are what ``serve_images``
    (uint8, any size) and ``serve_bytes`` (the file's bytes) serve from a process that
    never imports the project; the top classes are the class names, also in
    assets/class_names.txt. A file in the batch that does not decode is flagged in its row,
    and the others are served."""
    served_dir, jpeg, expected = photo_export
    with open(os.path.join(served_dir, "assets", "class_names.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == NAMES
    from tests.helpers import bitfields_bmp

    swapped = tmp_path / "swapped.bmp"  # red and blue masks swapped: TensorFlow misreads it
    swapped.write_bytes(bitfields_bmp(_photo(30, 40), (0xFF, 0xFF00, 0xFF0000)))

    code = textwrap.dedent(f"""
        import io, sys, numpy as np, tensorflow as tf, PIL.Image
        served = tf.saved_model.load({served_dir!r})
        encoded = tf.io.read_file({str(jpeg)!r})
        # uint8, 300x466, as PIL (and torchvision) decode it: serve_bytes decodes so too
        image = np.asarray(PIL.Image.open({str(jpeg)!r}).convert("RGB"))[np.newaxis]
        out = {{f"images.{{k}}": v.numpy() for k, v in served.serve_images(image).items()}}
        out.update({{f"bytes.{{k}}": v.numpy()
                    for k, v in served.serve_bytes(tf.stack([encoded] * 2)).items()}})
        broken = [encoded, b"not an image", tf.strings.substr(encoded, 0, 500)]  # cut short
        out.update({{f"broken.{{k}}": v.numpy()
                    for k, v in served.serve_bytes(tf.stack(broken)).items()}})
        bmp = io.BytesIO()  # the photo's pixels as a BMP, and one TensorFlow misreads
        PIL.Image.fromarray(image[0]).save(bmp, "BMP")
        batch = tf.constant([bmp.getvalue(), open({str(swapped)!r}, "rb").read()])
        out.update({{f"bmp.{{k}}": v.numpy() for k, v in served.serve_bytes(batch).items()}})
        for name, batch in (("none", [b"not an image"]), ("empty", tf.zeros((0,), tf.string))):
            out.update({{f"{{name}}.{{k}}": v.numpy()
                        for k, v in served.serve_bytes(tf.constant(batch)).items()}})
        refused = []  # images of another size, through the signatures (TF Serving's way)
        for key in ("serve", "serving_default"):
            signature = served.signatures[key]
            (name,) = signature.structured_input_signature[1]
            try:
                signature(**{{name: tf.zeros((1, 40, 40, 3))}})
                refused.append("")
            except tf.errors.InvalidArgumentError as err:
                refused.append(err.message)
        out["refused"] = np.array(refused)
        np.savez({str(tmp_path / 'out.npz')!r}, **out)
        assert not any(m.split('.')[0] in ("zoo", "ensembles", "data") for m in sys.modules)
    """)
    cold_python.run(code)
    served = np.load(tmp_path / "out.npz", allow_pickle=True)
    # 40x40 images where the export takes 33x33: TensorFlow's loaded signatures do not
    # check a shape, and the global-pooling member had served them confident probabilities.
    for message in served["refused"].tolist():
        assert message, "a signature served images of another size"
        if keras.backend.backend() == "tensorflow":  # (JAX's compiled module: its own words)
            assert re.search(r"serve takes images of 33x33x3 .*received images of shape\W+"
                             r"1 40 40 3", message), message
    assert served["bmp.decoded"].tolist() == [True, False]
    np.testing.assert_allclose(served["bmp.probabilities"][0], served["images.probabilities"][0],
                               atol=1e-6)
    assert np.isnan(served["bmp.probabilities"][1]).all()
    for source in ("images", "bytes"):
        probabilities = served[f"{source}.probabilities"]
        np.testing.assert_allclose(probabilities, np.repeat(expected, len(probabilities), 0),
                                   atol=1e-5, err_msg=source)
        order = np.argsort(-expected[0])
        assert [n.decode() for n in served[f"{source}.top_classes"][0]] == [
            NAMES[i] for i in order]
        np.testing.assert_allclose(served[f"{source}.top_scores"][0], expected[0][order],
                                   atol=1e-5)
        assert served[f"{source}.finite"].all()
        assert served[f"{source}.entropy"].shape == served[f"{source}.mutual_information"].shape
    assert served["bytes.decoded"].all()
    # One file that is not an image and one cut short: flagged in their rows, and the
    # photo beside them served as alone (the batch had failed as a whole).
    assert served["broken.decoded"].tolist() == [True, False, False]
    assert served["broken.finite"].tolist() == [True, False, False]
    np.testing.assert_allclose(served["broken.probabilities"][0], expected[0], atol=1e-5)
    assert np.isnan(served["broken.probabilities"][1:]).all()
    assert np.isnan(served["broken.entropy"][1:]).all()
    assert (served["broken.top_classes"][1:] == b"").all()
    assert [n.decode() for n in served["broken.top_classes"][0]] == [
        NAMES[i] for i in np.argsort(-expected[0])]
    # Nothing that decodes, and no file at all: answered (under JAX, a batch of none had
    # failed jax2tf's shape check).
    assert served["none.decoded"].tolist() == [False]
    assert np.isnan(served["none.probabilities"]).all()
    assert served["empty.probabilities"].shape == (0, len(NAMES))


@pytest.mark.all_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_an_ensemble_built_under_mixed_precision_serves_bytes_with_a_bad_file(policy,
                                                                              tmp_path):
    """Built under a mixed policy, the combination and its uncertainty compute in float16
    or bfloat16: serve_bytes' NaN rows are filled in the outputs' own dtype (a float32
    fill did not trace), and the good image is served as serve_images serves it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        ensemble = ensembles.Ensemble([tiny_model(16, 4), tiny_model(16, 4)])
        ensembles.export(ensemble, str(tmp_path / "served"))
    finally:
        keras.config.set_dtype_policy(previous)
    served = tf.saved_model.load(str(tmp_path / "served"))
    image = _photo(20, 30)
    out = served.serve_bytes(tf.constant([tf.io.encode_png(image).numpy(), b"not an image"]))
    assert out["decoded"].numpy().tolist() == [True, False]
    alone = served.serve_images(image[np.newaxis])
    np.testing.assert_allclose(np.asarray(out["probabilities"][0], "float32"),
                               np.asarray(alone["probabilities"][0], "float32"), atol=1e-6)
    assert np.isnan(np.asarray(out["probabilities"][1], "float32")).all()


def _encoded(image, fmt):
    """``image`` (uint8 HxWx3) as the bytes of a ``fmt`` file, written by Pillow."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.all_backends
def test_serve_bytes_refuses_an_image_too_large_before_decoding_it(tmp_path, monkeypatch):
    """A 120 KB PNG of 10000x10000 was decoded (1.5 GB of memory for one request), where
    data.load and zoo.predict refuse it from its header: the export reads every format's
    header in its graph and flags the image (decoded False), serving the others. Here the
    cap is 100 pixels: 8x8 images pass, 16x16 ones (and a top-down BMP) do not."""
    monkeypatch.setattr(data.folder, "MAX_PIXELS", 100)
    ensembles.export(tiny_model(16, 4), str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for size in (8, 16))
    batch, expected = [], []
    for fmt in ("PNG", "GIF", "BMP", "JPEG"):
        batch += [_encoded(small, fmt), _encoded(large, fmt)]
        expected += [True, False]
    top_down = bytearray(_encoded(large, "BMP"))
    top_down[22:26] = (-16).to_bytes(4, "little", signed=True)  # rows stored top-down
    # A WebP, which TensorFlow decodes and no header here sizes: flagged whatever its size,
    # as data.load and zoo.predict do not read it (a huge one was decoded in full).
    batch += [bytes(top_down), _encoded(small, "WEBP")]
    expected += [False, False]
    # BMPs TensorFlow decodes wrongly without a word, as data.load refuses them: a colour
    # palette (grey indices) and colour masks in another order (red and blue swapped).
    import io

    import PIL.Image

    from tests.helpers import bitfields_bmp

    palette = io.BytesIO()
    PIL.Image.fromarray(small).convert("P", palette=PIL.Image.ADAPTIVE, colors=16).save(
        palette, "BMP")
    batch += [palette.getvalue(), bitfields_bmp(small, (0xFF, 0xFF00, 0xFF0000)),
              bitfields_bmp(small, (0xFF0000, 0xFF00, 0xFF))]
    expected += [False, False, True]
    # GIFs are sized by their frames, as TensorFlow decodes them all, on a canvas of the
    # widest and highest: a "logical screen" of 8x8 said nothing of a 16x16 frame (a 67 KB
    # GIF of 9500x9500 took 1.4 GB), and many small frames add up.
    # And giflib reads one more chain of sub-blocks after an extension whose first is the
    # terminator: read by the spec, 4 bytes hid the frame (the last one here).
    hidden = b"\x21\xfe\x00;" + b"z" * 59 + b"\x00"
    for frames, screen, before, fits in (
            ([(16, 16)], (8, 8), b"", False), ([(5, 5)] * 4, None, b"", True),
            ([(5, 5)] * 5, None, b"", False), ([(10, 1), (1, 10)], None, b"", True),
            ([(11, 1), (1, 11)], None, b"", False), ([(16, 16)], (8, 8), hidden, False)):
        batch.append(gif_bytes(frames, screen, before))
        expected.append(fits)
    # A GIF of many tiny sub-blocks held the graph's walk for seconds: past 2**16 turns it
    # is refused as too large (the Python reading, fast, counts its 64 pixels).
    batch.append(gif_bytes([(8, 8)], before=b"\x21\xfe" + b"\x01x" * 70_000 + b"\x00"))
    expected.append(False)
    out = served.serve_bytes(tf.constant(batch))
    assert out["decoded"].numpy().tolist() == expected
    assert np.isfinite(out["probabilities"].numpy()[0::2][:4]).all()
    # The graph counts a GIF's pixels as data.load does (the Python reading).
    from ensembles.export import _header_pixels

    for i, encoded in enumerate(batch[-7:-1]):
        (tmp_path / f"{i}.gif").write_bytes(encoded)
        assert _header_pixels(tf.constant(encoded)).numpy() == \
            data.folder.decoded_pixels(str(tmp_path / f"{i}.gif"))


def test_a_model_trained_on_whole_images_is_predicted_and_served_whole(tmp_path, capsys):
    """A model trained without crop augmentation saw whole images resized to its input
    (data.load(image_size=), as `zoo evaluate` loads them), and its file records it
    (zoo.resize_mode "squash"). zoo.predict of the .keras file and the export's serve_bytes
    then give the numbers of that pipeline on a 40x66 photo without being told, where the
    centre crop (resize="crop", asked for) gives others; an export predicts as it was
    exported, and another resize asked of it is one line."""
    from zoo import cli

    size = 33
    def member(seed):  # pixels scaled to [0, 1]: answers that follow the image
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((size, size, 3))
        x = keras.layers.Conv2D(8, 5, strides=2, activation="relu")(
            keras.layers.Rescaling(1 / 255.0)(inputs))
        outputs = keras.layers.Dense(4, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(x))
        model = zoo.set_class_names(keras.Model(inputs, outputs, name=f"m{seed}"), NAMES)
        return zoo.set_resize_mode(model, "squash")

    members = [member(0), member(1)]
    model_file = zoo.save_model(ensembles.Ensemble(members), str(tmp_path / "e.keras"))
    photos = tmp_path / "photos" / "test" / "chelsea"
    photos.mkdir(parents=True)
    photo = photos / "wide.png"
    photo.write_bytes(tf.io.encode_png(_photo(40, 66, 3)).numpy())
    whole = data.load(str(tmp_path / "photos"), "test", image_size=size, batch_size=1,
                      class_names=NAMES)
    expected = ensembles.Ensemble(members).predict(whole, verbose=0)[0]

    def probabilities(table):
        return np.array([dict((table.loc[0, f"class_{k}"], table.loc[0, f"probability_{k}"])
                              for k in range(1, 5))[name] for name in NAMES])

    assert zoo.resize_mode(zoo.load_model(model_file)) == "squash"
    squashed = zoo.predict(model_file, [str(photo)], top=4)  # as the file says
    np.testing.assert_allclose(probabilities(squashed), expected, atol=1e-5)
    cropped = zoo.predict(model_file, [str(photo)], top=4, resize="crop")
    assert np.abs(probabilities(cropped) - expected).max() > 1e-4  # a different view
    np.testing.assert_allclose(probabilities(cropped), probabilities(zoo.predict(
        zoo.set_resize_mode(zoo.load_model(model_file), None), [str(photo)], top=4)))

    served_dir = str(tmp_path / "served")
    assert cli.main(["export", model_file, served_dir]) == 0  # as the file says, too
    assert "encoded images, resized whole as the model was trained (--resize squash) -> " \
        in capsys.readouterr().out
    with open(os.path.join(served_dir, "assets", "zoo_model.json"), encoding="utf-8") as f:
        assert json.load(f)["resize"] == "squash"
    served = tf.saved_model.load(served_dir)
    out = served.serve_bytes(tf.constant([photo.read_bytes()]))
    np.testing.assert_allclose(out["probabilities"].numpy()[0], expected, atol=1e-5)
    np.testing.assert_allclose(probabilities(zoo.predict(served_dir, [str(photo)], top=4)),
                               expected, atol=1e-5)
    capsys.readouterr()
    assert cli.main(["predict", served_dir, str(photo), "--resize", "crop"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"zoo predict: error: The export {served_dir} resizes images in its graph by "
        "'squash'; received resize='crop'. Export the model again with resize='crop' (zoo "
        "export --resize crop)."]
    # Said before the SavedModel is loaded: a copy whose graph is cut short says it too.
    shutil.copytree(served_dir, tmp_path / "cut")
    (tmp_path / "cut" / "saved_model.pb").write_bytes(b"")
    assert cli.main(["predict", str(tmp_path / "cut"), str(photo), "--resize", "crop"]) == 2
    assert "resizes images in its graph by 'squash'" in capsys.readouterr().err
    assert cli.main(["export", model_file, str(tmp_path / "cropped"), "--resize", "crop"]) == 0
    assert "encoded images, centre-cropped (--resize crop) -> " \
        in capsys.readouterr().out
    with open(tmp_path / "cropped" / "assets" / "zoo_model.json", encoding="utf-8") as f:
        assert json.load(f)["resize"] == "crop"  # asked for: the centre crop
    # An export made before zoo_model.json was written (crop, members unknown) predicts
    # (it was a FileNotFoundError), and refuses the other view as the others do.
    os.remove(tmp_path / "cropped" / "assets" / "zoo_model.json")
    older = zoo.predict(str(tmp_path / "cropped"), [str(photo)], top=4)
    np.testing.assert_allclose(probabilities(older), probabilities(cropped), atol=1e-5)
    with pytest.raises(ValueError, match="resizes images in its graph by 'crop'"):
        zoo.predict(str(tmp_path / "cropped"), [str(photo)], resize="squash")
    # An ONNX file records the view in its metadata, and zoo.predict resizes so for it;
    # a LiteRT file records none and resizes nothing: a resize asked of it is one line,
    # before the model is read, and without one zoo export says how to make its inputs.
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("tf2onnx"):
        onnx_file = str(tmp_path / "e.onnx")
        assert cli.main(["export", model_file, onnx_file, "--format", "onnx"]) == 0
        assert "zoo predict resizes images for it by its metadata's resize squash" \
            in capsys.readouterr().out
        np.testing.assert_allclose(probabilities(zoo.predict(onnx_file, [str(photo)], top=4)),
                                   expected, atol=1e-5)
        # The other view asked of it is one line, as of a SavedModel (it was served).
        with pytest.raises(UserError, match=re.escape(
                f"The export {onnx_file} was exported for the view resize='squash'; received "
                "resize='crop'. Export the model again with resize='crop' (zoo export "
                "--format onnx --resize crop).")):
            zoo.predict(onnx_file, [str(photo)], resize="crop")
        np.testing.assert_allclose(probabilities(zoo.predict(
            onnx_file, [str(photo)], top=4, resize="squash")), expected, atol=1e-5)
    for resize in ("squash", "crop"):
        capsys.readouterr()
        assert cli.main(["export", str(tmp_path / "missing.keras"), str(tmp_path / "e.tflite"),
                         "--format", "litert", "--resize", resize]) == 2
        litert = (f"resize='{resize}' does nothing for a LiteRT file, which takes images "
                  "already at the input size and records no resize mode (make them as "
                  f"data.eval_view(image, size, '{resize}') does): leave it out, or export a "
                  "SavedModel or an ONNX file.")
        assert capsys.readouterr().err.strip().splitlines() == [f"zoo export: error: {litert}"]
        with pytest.raises(UserError, match=re.escape(litert)):  # one check, the same words
            ensembles.export(zoo.load_model(model_file), str(tmp_path / "e2.tflite"),
                             format="litert", resize=resize)
    with pytest.raises(UserError, match=r"scale=40 is the shorter side the centre crop is "
                                        r"taken from; ensemble is exported with "
                                        r"resize='squash' \(the whole image, as it was "
                                        r"trained\), which takes no crop"):
        ensembles.export(zoo.load_model(model_file), str(tmp_path / "s2"), scale=40)
    with pytest.raises(UserError, match=r"resize='squash' \(the whole image\), which"):
        ensembles.export(zoo.load_model(model_file), str(tmp_path / "s2"), scale=40,
                         resize="squash")
    with pytest.raises(UserError, match=r"`resize` must be one of \('crop', 'squash'\); "
                                        r"received 'stretch'"):
        zoo.predict(model_file, [str(photo)], resize="stretch")
    assert not os.path.exists(tmp_path / "s2")
    # A file format resizes nothing: scale= was accepted and dropped (zoo.predict then
    # cropped at another scale than a SavedModel of the same arguments).
    with pytest.raises(UserError, match=r"scale=300 is the shorter side a SavedModel's graph "
                                        r"resizes images to .* an ONNX file takes images"):
        ensembles.export(zoo.load_model(model_file), str(tmp_path / "s.onnx"), scale=300,
                         format="onnx", resize="crop")
    # The wrong object is one line, not an AttributeError from inside.
    with pytest.raises(UserError, match=r"Expected a Keras model or ensemble; received str "
                                        r"'.*e.keras' \(a path\? load it first"):
        ensembles.export(model_file, str(tmp_path / "s3"))


@pytest.mark.slow  # a TensorFlow start-up of its own (7 s of CPU here)
def test_saved_model_cli_runs_the_export_on_the_decoded_photo(photo_export, tmp_path):
    """TensorFlow's own command line, outside this project (an empty PYTHONPATH), on the
    photo as PIL decodes it (serve_images) and on its file's bytes beside a file that is
    not an image (serve_bytes, whose tf.data ops run there too, and decode as PIL does):
    the probabilities above, and the other file flagged."""
    import PIL.Image

    served_dir, jpeg, expected = photo_export
    image = np.asarray(PIL.Image.open(jpeg).convert("RGB"))[np.newaxis]
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "bytes.npy", np.array([jpeg.read_bytes(), b"not an image"], object),
            allow_pickle=True)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    for signature, inputs in (("serve_images", "image.npy"), ("serve_bytes", "bytes.npy")):
        result = subprocess.run(
            [cli, "run", "--dir", served_dir, "--tag_set", "serve", "--signature_def",
             signature, "--inputs", f"images={tmp_path / inputs}", "--outdir",
             str(tmp_path / signature)], capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 0, result.stderr[-3000:]
        np.testing.assert_allclose(np.load(tmp_path / signature / "probabilities.npy")[:1],
                                   expected, atol=1e-5)
    assert np.load(tmp_path / "serve_bytes" / "decoded.npy").tolist() == [True, False]


def test_zoo_predict_names_the_classes_the_same_from_the_file_and_its_export(tmp_path, capsys):
    """`zoo predict` on a folder (with a broken JPEG and a text file in it) and on one
    photo, from the .keras ensemble and its export folder: the same classes and numbers
    (1e-5),
    equal to predict on the centre crop; the broken file is named in one line and skipped
    (exit 1); `zoo.predict` is the same table."""
    from zoo import cli

    size = 33
    members = [zoo.set_class_names(tiny_model(size, 4), NAMES) for _ in range(2)]
    for member in members:  # sharper than at initialisation: the classes differ clearly
        member.layers[-1].set_weights([w * 30 for w in member.layers[-1].get_weights()])
    model_file = zoo.save_model(ensembles.Ensemble(members), str(tmp_path / "e.keras"))
    assert cli.main(["export", model_file, str(tmp_path / "served")]) == 0
    sources = [model_file, str(tmp_path / "served")]  # a .onnx file: in the test below
    photos = tmp_path / "photos" / "garden"
    photos.mkdir(parents=True)
    for i in range(3):
        (photos / f"p{i}.png").write_bytes(tf.io.encode_png(_photo(60 + 7 * i, 80, i)).numpy())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (photos / "notes.txt").write_text("not an image")
    capsys.readouterr()
    tables = {}
    for source in sources:
        csv = str(tmp_path / f"{os.path.basename(source)}.csv")
        assert cli.main(["predict", source, str(tmp_path / "photos"), "--top", "3",
                         "--output", csv]) == 1
        out, err = capsys.readouterr()
        no_view = [f"Note: {model_file} records no view; its images are centre-cropped "
                   "(--resize crop), where zoo evaluate scores such a model on whole images: "
                   "give --resize squash for a model trained on them."]  # (an export has one)
        assert err.strip().splitlines() == [
            f"zoo predict: Skipped {photos / 'broken.jpg'}: truncated: no end-of-image marker, "
            "and it cannot be decoded" + err.split("cannot be decoded")[1].splitlines()[0]
        ] + no_view * (source == model_file)
        lines = [line for line in out.splitlines() if line.startswith(str(photos))]
        assert len(lines) == 3 and "mutual information" in lines[0], out
        tables[source] = __import__("pandas").read_csv(csv)
    ours, *others = tables.values()
    assert list(ours.columns) == ["image", "class_1", "probability_1", "class_2",
                                  "probability_2", "class_3", "probability_3", "entropy",
                                  "mutual_information", "finite"]
    assert ours["image"].tolist() == [str(photos / f"p{i}.png") for i in range(3)]
    numbers = ["probability_1", "probability_2", "probability_3", "entropy",
               "mutual_information"]
    for served in others:  # the export folder
        assert (ours[["class_1", "class_2", "class_3"]] == served[["class_1", "class_2",
                                                                   "class_3"]]).all().all()
        np.testing.assert_allclose(ours[numbers], served[numbers], atol=1e-5)

    # The numbers are the ensemble's on the centre crop, as zoo evaluate --center-crop sees it.
    image = tf.cast(tf.io.decode_png((photos / "p1.png").read_bytes(), channels=3), "float32")
    crop = data.resize_and_center_crop(image, data.crop_scale(size), size)
    expected = ensembles.Ensemble(members).predict(crop[tf.newaxis], verbose=0)[0]
    for k in range(1, 4):
        assert ours.loc[1, f"probability_{k}"] == pytest.approx(
            expected[NAMES.index(ours.loc[1, f"class_{k}"])], abs=1e-5)
    np.testing.assert_allclose(ours.loc[1, "probability_1"], expected.max(), atol=1e-5)

    table = zoo.predict(model_file, [str(photos / "p1.png")], top=10)  # top: at most 4
    assert table.columns[-3:].tolist() == ["entropy", "mutual_information", "finite"]
    for k in range(1, 5):  # every class, best first (ties in any order)
        assert table.loc[0, f"probability_{k}"] == pytest.approx(
            expected[NAMES.index(table.loc[0, f"class_{k}"])], abs=1e-5)
    assert table[[f"probability_{k}" for k in range(1, 5)]].diff(axis=1).max(axis=1)[0] <= 0
    with pytest.raises(UserError, match=r"No such image or folder: .*absent\.jpg"):
        zoo.predict(model_file, [str(tmp_path / "absent.jpg")])


def _mixed_ensemble(size=67):
    """A two-tower LRN AlexNet, a GoogLeNet and a ResNet-18, with BatchNorm statistics that
    are not the initial ones, and the names of their classes."""
    members = [zoo.alexnet(input_shape=(size, size, 3), classes=4, width=16, towers=2),
               zoo.googlenet(input_shape=(size, size, 3), classes=4, width=0.125),
               zoo.resnet18(input_shape=(size, size, 3), classes=4, width=0.125)]
    rng = np.random.default_rng(0)
    for layer in members[2].layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 2, variance.shape).astype("float32")])
    return ensembles.Ensemble([zoo.set_class_names(m, NAMES) for m in members])


@pytest.mark.all_backends
@pytest.mark.parametrize("normalize", ["standardize", "channel_mean", "adapted"])
def test_a_model_that_normalizes_its_input_exports_to_onnx(normalize, tmp_path):
    """data.normalized_input's default, Keras' Normalization given a mean and variance,
    once made each of them an input of the ONNX graph: the export stopped with a
    traceback, and the README trains every model with it; so did a Normalization adapted
    to the data (Keras' tutorials' way: its mean set by adapt, not given). One small
    conversion, in the fast tier: ONNX Runtime serves Keras' probabilities."""
    import importlib.util

    from ensembles.export import runtime

    pytest.importorskip("onnxruntime")

    stats = data.compute_statistics(tiny_data(n=16).map(lambda x, y: x * 50.0 + 100.0))
    if normalize == "adapted":
        inputs = keras.Input((8, 8, 3))
        layer = keras.layers.Normalization(name="normalize")
        layer.adapt(tiny_data(n=16).map(lambda x, y: x * 50.0 + 100.0))
        inputs = layer(inputs)
    else:
        inputs = data.normalized_input(stats, (8, 8, 3), normalize=normalize)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(keras.utils.get_source_inputs(inputs),
                        keras.layers.Dense(4, activation="softmax")(x))
    out = str(tmp_path / "normalized.onnx")
    if keras.backend.backend() == "jax" and importlib.util.find_spec("jax2onnx") is None:
        with pytest.raises(ValueError, match=r"^The onnx export under KERAS_BACKEND=jax needs "
                                             r"jax2onnx .*pip install jax2onnx"):
            ensembles.export(model, out, format="onnx")
        assert not os.listdir(tmp_path)
        return
    ensembles.export(model, out, format="onnx")
    images = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    served = runtime(out)(images)["probabilities"]
    np.testing.assert_allclose(served, keras.ops.convert_to_numpy(model(images)), atol=1e-5)
    assert np.ptp(served) > 0.01  # the normalisation is in the numbers
    if normalize != "channel_mean":  # put back as it was: the model still trains and saves
        layer = model.get_layer("normalize")
        assert not isinstance(layer.mean, np.ndarray)


def test_onnx_exports_a_runtime_cannot_run_or_of_no_fixed_size_are_one_line(tmp_path):
    """A float64 model (ONNX Runtime: no float64 Conv, after the conversion; LiteRT: the
    interpreter's FlexMul) and a graph holding a tensor from outside any layer (tf2onnx
    makes it a second input: "too many values to unpack" at the check) were tracebacks; a
    model of any image size is one line that says how to give it one. Nothing written."""
    pytest.importorskip("onnxruntime")
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        wide = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3),
                                 keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(3, activation="softmax")], name="wide")
    finally:
        keras.config.set_dtype_policy(policy)
    for format, suffix in (("onnx", ".onnx"), ("litert", ".tflite")):
        with pytest.raises(ValueError, match=r"^wide computes in float64, which an? "
                                             r"(ONNX|LiteRT) file does not serve \(ONNX "
                                             r"Runtime has no float64 Conv.*export it as a "
                                             r"SavedModel"):
            ensembles.export(wide, str(tmp_path / f"m{suffix}"), format=format)
    inputs = keras.Input((8, 8, 3))
    shifted = keras.ops.subtract(inputs, keras.ops.convert_to_tensor(np.full(3, 100.0,
                                                                             "float32")))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(shifted))
    captured = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled),
                           name="captured")
    with pytest.raises(ValueError, match=r"^Not written: captured_serving in onnx takes 1 more "
                                         r"input\(s\) than its images \(.+\): tensors its "
                                         r"graph holds from outside any layer"):
        ensembles.export(captured, str(tmp_path / "m.onnx"), format="onnx")
    assert not os.listdir(tmp_path)
    free = zoo.resnet18(input_shape=(None, None, 3), classes=3, width=0.125)
    with pytest.raises(ValueError, match=r"takes \(None, None, 3\): give it a size, building "
                                         r"it with input_shape=\(size, size, 3\) \(a zoo "
                                         r"builder's weights load at any size"):
        ensembles.export(free, str(tmp_path / "free"))


@pytest.mark.all_backends
def test_runtime_exports_keras_cannot_make_faithfully_are_one_line(tmp_path):
    """A LiteRT export under JAX stopped with Keras' traceback ("requires TensorFlow or
    PyTorch backend"); a mixed-precision model's LiteRT export with the interpreter's
    (FlexConv2D), and its ONNX one was refused as a layer that "does not convert
    faithfully", where the gap is float16's. Both before any work, nothing written."""
    import zoo

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = zoo.resnet20(input_shape=(8, 8, 3), classes=3, width=0.25)
    finally:
        keras.config.set_dtype_policy(policy)
    plain = zoo.resnet20(input_shape=(8, 8, 3), classes=3, width=0.25, name="plain")
    twin = zoo.resnet20(input_shape=(8, 8, 3), classes=3, width=0.25, name="twin")
    # A float32 model exported while the global policy is mixed: its input layer and the
    # export's wrappers take that policy and compute nothing; the model is float32.
    from zoo.optimizers import half_precision_in

    keras.config.set_dtype_policy("mixed_float16")
    try:
        assert half_precision_in(ensembles.as_ensemble(plain)) is None
        assert half_precision_in(ensembles.as_ensemble(ensembles.Ensemble([plain, twin]))) \
            is None
    finally:
        keras.config.set_dtype_policy(policy)
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match=r"^A LiteRT file is written by Keras' export "
                                             r"under TensorFlow.*KERAS_BACKEND=tensorflow"):
            ensembles.export(plain, str(tmp_path / "m.tflite"), format="litert")
    for format, suffix in (("onnx", ".onnx"), ("litert", ".tflite")):
        if format == "litert" and keras.backend.backend() == "jax":
            continue
        where = "ensemble's resnet20" if format == "onnx" else "resnet20"
        with pytest.raises(ValueError, match=rf"^{where} computes in float16 \(trained with "
                                             r"mixed precision\), which an? (ONNX|LiteRT) "
                                             r"file does not serve faithfully.*export it as a "
                                             r"SavedModel"):
            ensembles.export(ensembles.Ensemble([plain, half]) if format == "onnx" else half,
                             str(tmp_path / f"m{suffix}"), format=format)
    assert not os.listdir(tmp_path)


@pytest.mark.slow  # two conversions of three architectures: 25 s each
@pytest.mark.parametrize("format, runtime", [("onnx", "onnxruntime"),
                                             ("litert", "ai_edge_litert")])
def test_onnx_and_litert_exports_serve_kerass_probabilities_in_their_runtimes(
        format, runtime, tmp_path, capsys):
    """A mixed ensemble and a snapshot ensemble, through `zoo export --format`: ONNX Runtime
    and the LiteRT interpreter serve Keras' probabilities and uncertainty within 1e-5, and
    the class names lie beside the file (and in the ONNX metadata); `zoo.predict` gives the
    same table from the .onnx file as from the .keras one."""
    pytest.importorskip(runtime)
    from zoo import cli
    from ensembles.export import runtime as load_runtime

    mixed = _mixed_ensemble()
    mixed_file = zoo.save_model(mixed, str(tmp_path / "mixed.keras"))
    architecture = zoo.set_class_names(zoo.resnet18(input_shape=(32, 32, 3), classes=4,
                                                    width=0.125), NAMES)
    for k in (1, 2):
        keras.utils.set_random_seed(k)
        zoo.resnet18(input_shape=(32, 32, 3), classes=4, width=0.125).save_weights(
            str(tmp_path / f"snapshot-{k}.weights.h5"))
    snapshots = ensembles.from_snapshots(architecture, [str(tmp_path / f"snapshot-{k}.weights.h5")
                                                        for k in (1, 2)])
    snapshot_file = zoo.save_model(snapshots, str(tmp_path / "snapshots.keras"))
    suffix = ".onnx" if format == "onnx" else ".tflite"
    for model, model_file in ((mixed, mixed_file), (snapshots, snapshot_file)):
        out = str(tmp_path / (os.path.basename(model_file)[:-6] + suffix))
        assert cli.main(["export", model_file, out, "--format", format]) == 0
        if format == "litert":  # it resizes nothing: how to make its inputs
            assert f"make them as data.eval_view(image, {model.input_shape[1]}, 'crop') does" \
                in capsys.readouterr().out
        with open(out + ".classes.txt", encoding="utf-8") as f:
            assert f.read().splitlines() == NAMES
        size = model.input_shape[1]
        x = np.random.default_rng(2).uniform(0, 255, (5, size, size, 3)).astype("float32")
        expected = ensembles.serving_model(model).predict(x, verbose=0)
        served = load_runtime(out)(x)
        for key in ("probabilities", "predictive_entropy", "mutual_information"):
            np.testing.assert_allclose(served[key], expected[key], atol=1e-5, err_msg=key)
        assert served["finite"].all()
        assert np.ptp(expected["probabilities"]) > 0.05  # not a degenerate check
    if format == "onnx":
        import onnxruntime

        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(2):
            (photos / f"p{i}.png").write_bytes(tf.io.encode_png(_photo(40, 50 + i, i)).numpy())
        ours, theirs = (zoo.predict(source, [str(photos)], top=4)
                        for source in (snapshot_file, out))
        assert (ours["class_1"] == theirs["class_1"]).all()
        numbers = [c for c in ours.columns if c.startswith("probability") or c in (
            "entropy", "mutual_information")]
        np.testing.assert_allclose(ours[numbers], theirs[numbers], atol=1e-5)

        meta = onnxruntime.InferenceSession(out).get_modelmeta().custom_metadata_map
        assert json.loads(meta["class_names"]) == NAMES
        assert json.loads(meta["members"]) == ["snapshot_1", "snapshot_2"]
    # An existing file is replaced only when asked; a wrong suffix is one line.
    assert cli.main(["export", snapshot_file, out, "--format", format]) == 2
    assert cli.main(["export", snapshot_file, out + ".bin", "--format", format]) == 2


@pytest.mark.parametrize("missing", ["tf2onnx", "onnx"])
def test_an_onnx_export_without_the_deploy_extra_is_one_line_naming_it(
        missing, tmp_path, monkeypatch, capsys):
    """`zoo export --format onnx` and `zoo predict FILE.onnx` where a package of the deploy
    extra is missing: one line naming the package and the extra, exit 2, nothing written."""
    import importlib.util

    from zoo import cli

    model_file = zoo.save_model(zoo.set_class_names(tiny_model(33, 4), NAMES),
                                str(tmp_path / "m.keras"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == missing else find_spec(name, *a))
    out = tmp_path / "m.onnx"
    capsys.readouterr()
    assert cli.main(["export", model_file, str(out), "--format", "onnx"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"needs {missing}, not installed" in line and "[deploy]" in line, line
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]
    out.write_bytes(b"\x08\x07 truncated")  # not read where onnx is missing
    assert cli.main(["predict", str(out), model_file]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    if missing == "onnx":  # ONNX Runtime's models are read with it
        assert "needs onnx, not installed" in line and "[deploy]" in line, line
    else:
        assert f"{out} is not an ONNX model" in line, line


def test_a_file_exports_class_names_land_right_after_it(tmp_path, monkeypatch):
    """The .classes.txt file landed before the model's flush (hundreds of MB): a Ctrl-C or
    a failure there left the new names beside the previous model. Now they are written
    first and renamed into place right after the model, nothing long in between."""
    import safeio

    model = zoo.set_class_names(tiny_model(8, 4), NAMES)
    events = []
    replace, flush = os.replace, safeio._flush
    monkeypatch.setattr(os, "replace", lambda source, target: (
        events.append(("land", os.path.basename(target))) or replace(source, target)))
    monkeypatch.setattr(safeio, "_flush", lambda path, *args, **kwargs: (
        events.append(("flush", os.path.basename(str(path)))) or flush(path, *args, **kwargs)))
    out = str(tmp_path / "m.tflite")
    ensembles.export(model, out, format="litert")
    landed = [i for i, (kind, _) in enumerate(events) if kind == "land"]
    assert [events[i][1] for i in landed] == ["m.tflite", "m.tflite.classes.txt"]
    between = [name for _, name in events[landed[0] + 1:landed[1]]]
    assert not any(name.endswith("m.tflite") for name in between), between
    with open(out + ".classes.txt", encoding="utf-8") as f:
        assert f.read().splitlines() == NAMES
