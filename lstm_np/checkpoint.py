"""Checkpoints without pickle: arrays in .npz (loaded with allow_pickle=False), everything else in JSON.

A checkpoint is a directory:

    config.json           model and training configuration (written once per run)
    src_vocab.json        source vocabulary      tgt_vocab.json   target vocabulary
    weights-<step>.npz    model parameters by name, for resuming (the last step saved)
    optimizer-<step>.npz  optimizer moments and step count (and the weight average's, with --average-decay)
    best-<step>.npz       the parameters the final test chose on validation, until then the best validation
                          point's (what `translate` loads)
    checkpoint.json       the manifest: which files are current, the step, RNG states, training state

Atomic by construction: new array files get new names, then the manifest is replaced in one os.replace,
and only then are the files it no longer names deleted (with any left behind by an earlier run that was
killed mid-write). A kill at any moment leaves a manifest that names complete files: the previous
checkpoint or the new one, never a mix.
"""
import json
import os
import re
import zipfile
import zlib

import numpy as np

from .files import TEMP_PREFIX, atomic_write

MANIFEST = "checkpoint.json"
FORMAT = "lstm_np-checkpoint-1"
STEP_FILE = re.compile(r"(weights|optimizer|best)-\d+\.npz")   # the array files save() writes


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupted, unsafe or incompatible; the message names the file."""


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True).encode("utf-8")))


def read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON file ({e})") from None


def save_arrays(path, arrays):
    """{name: array} -> .npz at `path`, atomically; refuses object arrays (they would need pickle)."""
    for name, a in arrays.items():
        if np.asarray(a).dtype.hasobject:
            raise CheckpointError(f"{path}: array {name!r} holds Python objects; checkpoints store numbers only")
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_arrays(path):
    """.npz -> {name: array}, with allow_pickle=False; any damage is a CheckpointError naming the file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":  # np.load would take anything else for a pickle and refuse it as one
            raise CheckpointError(f"{path}: not an .npz archive (corrupted, truncated or not written by lstm_np)")
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray):   # a member that is not .npy comes back as raw bytes
                raise CheckpointError(f"{path}: member {name!r} is not a NumPy array")
        return arrays
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise CheckpointError(f"{path}: contains pickled Python objects, refused (checkpoints hold numbers "
                                  f"only)") from None
        raise CheckpointError(f"{path}: corrupted or truncated ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError) as e:
        raise CheckpointError(f"{path}: corrupted or truncated ({type(e).__name__}: {e})") from None


def check_parameters(named_parameters, arrays, path):
    """CheckpointError naming `path` unless `arrays` has exactly the model's parameter names, their shapes,
    a float dtype and only finite values."""
    params = {name: value for name, value, _ in named_parameters}
    missing, extra = sorted(set(params) - set(arrays)), sorted(set(arrays) - set(params))
    if missing or extra:
        raise CheckpointError(f"{path}: parameters do not match the model (missing {missing[:5]}, "
                              f"unexpected {extra[:5]}): a checkpoint from an incompatible configuration")
    for name, value in params.items():
        a = arrays[name]
        if a.shape != value.shape or a.dtype.kind != "f":
            raise CheckpointError(f"{path}: parameter {name!r} has shape {a.shape} and dtype {a.dtype}, the model "
                                  f"expects {value.shape} float: a checkpoint from an incompatible configuration")
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: parameter {name!r} contains NaN or Inf")


def assign_parameters(named_parameters, arrays, path):
    """Copy arrays into the model's parameters, all checked first (no half-loads)."""
    check_parameters(named_parameters, arrays, path)
    for name, value, _ in named_parameters:
        value[...] = arrays[name]


class CheckpointDir:
    """Read and write one checkpoint directory (see the module docstring)."""

    def __init__(self, path):
        self.path = str(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self):
        return os.path.exists(self.file(MANIFEST))

    def manifest(self):
        m = read_json(self.file(MANIFEST))
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise CheckpointError(f"{self.file(MANIFEST)}: not an lstm_np checkpoint manifest")
        return m

    def current(self, which="weights"):
        """Path of the array file the manifest names for `which` ("weights", "optimizer" or "best"; "best"
        falls back to "weights" when no validation has run yet)."""
        m = self.manifest()
        name = m.get(which) or (m.get("weights") if which == "best" else None)
        if not isinstance(name, str) or os.path.basename(name) != name:
            raise CheckpointError(f"{self.file(MANIFEST)}: entry {which!r} is missing or not a file name")
        return self.file(name)

    def save(self, step, weights, optimizer, state, best_weights=None):
        """Write the arrays under step-tagged names, then swap the manifest, then delete stale files."""
        os.makedirs(self.path, exist_ok=True)
        old = self.manifest() if self.exists() else {}
        tag = f"{step:08d}"
        m = {"format": FORMAT, "step": int(step), "state": state,
             "weights": f"weights-{tag}.npz", "optimizer": f"optimizer-{tag}.npz",
             "best": old.get("best")}
        save_arrays(self.file(m["weights"]), weights)
        save_arrays(self.file(m["optimizer"]), optimizer)
        if best_weights is not None:
            m["best"] = f"best-{tag}.npz"
            save_arrays(self.file(m["best"]), best_weights)
        write_json(self.file(MANIFEST), m)
        keep = {m["weights"], m["optimizer"], m["best"]}
        for name in os.listdir(self.path):   # the files replaced now, and leftovers of a killed run
            if name not in keep and (STEP_FILE.fullmatch(name) or name.startswith(TEMP_PREFIX)):
                try:
                    os.remove(self.file(name))
                except FileNotFoundError:
                    pass
        return m

    def load(self, which="weights"):
        """The arrays of the current `which` file (see `current`)."""
        return load_arrays(self.current(which))
