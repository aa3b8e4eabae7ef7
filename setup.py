"""Packaging for keras-zoo-ensembles: paper-faithful Keras models and their ensembles."""

from setuptools import find_packages, setup

DEPLOY = ["onnx", "onnxruntime", "tf2onnx", "ai-edge-litert"]  # (onnx: read directly too)

setup(
    name="keras-zoo-ensembles",
    version="0.1.0",
    description=(
        "Paper-faithful classic ImageNet networks (AlexNet, GoogLeNet, ResNet, VGG) for "
        "Keras 3, and the ensembles that made those papers win."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # Keras 3.13's
    packages=find_packages(include=["zoo", "zoo.*", "ensembles", "ensembles.*", "data", "data.*",
                                    "safeio"]),
    package_data={"zoo.pretrained": ["imagenet_classes.txt"]},
    install_requires=[
        "tensorflow>=2.16",
        # 3.13: model.export(format="litert"); tested with 3.15 (zoo.training.keras_internals
        # names the private parts it relies on, checked as zoo.train starts).
        "keras>=3.13,<4",
        "tensorflow-datasets",
        # tensorflow-datasets needs it at tfds.load time but does not declare it.
        "importlib_resources",
        "numpy",
        "pandas",
        "matplotlib",
        "tensorboard",  # the run directory's logs/ (tensorflow no longer pulls it in)
        "scikit-learn",  # the embedded digits dataset ships inside it
        "scipy",  # ensembles.fit_weights' optimiser
        "keras-tuner>=1.4",  # zoo.search
        "safetensors",  # torchvision/timm state dicts, read without PyTorch
        "protobuf",  # .caffemodel files, read without Caffe
    ],
    # The notebook (examples/quickstart.ipynb) is executed by the tests through nbclient.
    # OpenCV 4's Caffe importer checks the .caffemodel conversion (OpenCV 5 has none).
    # `zoo export --format onnx|litert` converts with Keras' own export (tf2onnx for ONNX)
    # and checks the file in the runtime that deploys it: `pip install ".[deploy]"`.
    # pytest 9.2 breaks pytest-xdist's --dist loadgroup (pytest-xdist#1386: the group no
    # longer reaches the scheduler, so the tests sharing one process ran on both workers and
    # started it twice: 20 s of CPU each); tests/conftest.py refuses to run without groups.
    extras_require={
        "deploy": DEPLOY,
        "test": ["pytest>=7,<9.2", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "jax",
                 "opencv-python-headless<5", *DEPLOY],
    },
    entry_points={"console_scripts": ["zoo=zoo.cli:main"]},
    classifiers=[
        "Operating System :: POSIX",  # (safeio locks run directories with fcntl)
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
