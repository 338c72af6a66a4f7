"""bizoo: bidirectional sequence models for Hugging Face transformers.

The repository root is the import package ``bizoo`` (``package_dir={"bizoo": "."}``), so the generic folder
names ``modeling``, ``configuration``, ``kernels`` and ``scripts`` only ever exist as ``bizoo.*``.
"""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "__init__.py").read_text(), re.M).group(1)

# Every folder that holds Python code, as a dotted name under ``bizoo``. ``bizoo.kernels`` has no
# ``__init__.py`` on purpose (see ARCHITECTURE.md §1): it is an implicit namespace package inside ``bizoo``.
PACKAGES = [
    "bizoo",
    "bizoo.configuration",
    "bizoo.modeling",
    "bizoo.kernels",
    "bizoo.kernels.crf",
    "bizoo.kernels.lion",
    "bizoo.kernels.lstm",
    "bizoo.kernels.ssm",
    "bizoo.scripts",
    "bizoo.scripts.bench",
    "bizoo.scripts.lib",
]

setup(
    name="bizoo",
    version=VERSION,
    description="A zoo of bidirectional sequence models (LION, BiGS, BiLSTM-CRF, ELMo) for Hugging Face transformers",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"bizoo": "."},
    packages=PACKAGES,
    package_data={
        "bizoo.scripts": ["corpus/shakespeare/*.txt", "corpus/README.md"],
        "bizoo": ["hub_cards/*.md"],
    },
    include_package_data=False,
    install_requires=[
        # The lowest torch the whole suite passes with (2.12.1; 2.8.0 failed torch.compile and torch.export of the
        # BiLSTM-CRF and the Triton interpreter tests, 2.6 lacks torch.compiler.is_exporting); tested up to 2.15.0.
        "torch>=2.12",
        # The lowest transformers the whole suite passes with (5.17 and earlier fail the config-error tests, 5.2 and
        # earlier many more); no upper bound until a release is known to break bizoo.
        "transformers>=5.18",
        "accelerate>=1.0",
        "datasets>=3.0",
        "tokenizers>=0.23.1",
        "safetensors>=0.4",
        "huggingface_hub>=1.31",
        "matplotlib>=3.7",
        # Triton ships wheels for Linux x86-64 only; elsewhere the Triton backend is simply absent. 3.7.1 is the
        # lowest whose interpreter runs the kernels (the suite's check of them on a CPU; 3.6.0 fails on loop bounds
        # read from memory); what torch 2.12 asks for.
        "triton>=3.7.1; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={
        # bizoo convert-elmo reads bilm-tf's HDF5 weight files; the ELMo model itself never needs h5py.
        "elmo": ["h5py>=3.8"],
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3",
            "hypothesis>=6",
            # The wheel test builds without isolation (offline): the build backend must be in the environment.
            "setuptools>=68",
            "wheel",
            # Independent oracles for our own implementations (CRF, metrics, ELMo fixtures).
            "pytorch-crf>=0.7",
            "seqeval>=1.2",
            "scikit-learn>=1.3",
            "scipy>=1.10",
            "h5py>=3.8",
            # ONNX export of the models, checked against onnxruntime (tests/modeling/test_compile_export.py).
            "onnx>=1.17",
            "onnxscript>=0.3",
            "onnxruntime>=1.20",
            # LoRA adapters on every model (tests/modeling/test_peft.py).
            "peft>=0.13",
        ],
    },
    entry_points={"console_scripts": ["bizoo = bizoo.scripts.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
