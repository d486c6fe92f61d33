"""A run folder: what `lstm-np train` writes, and what `translate`, `serve`, `--resume` and sweeps read back.

    config.json        {"train": the TrainConfig fields, "model": the Seq2Seq arguments}   (once, by a new run)
    src_vocab.json     tgt_vocab.json       the vocabularies                           (once, by a new run)
    checkpoint.json    the manifest, with the training state, and the array files it names (checkpoint.py)

The training state records `max_len`, the output limit the run's final test decodes with; `output_limit` is
that rule (2·length + 10, written here once) and how far `translate` and `serve` decode a source.
"""
import os

from .checkpoint import MANIFEST, STEP_FILE, CheckpointDir, CheckpointError, assign_parameters, read_json, write_json
from .checks import check_int
from .data import Vocab
from .files import TEMP_PREFIX
from .seq2seq import Seq2Seq

CONFIG, SRC_VOCAB, TGT_VOCAB = "config.json", "src_vocab.json", "tgt_vocab.json"
RUN_FILES = (MANIFEST, CONFIG, SRC_VOCAB, TGT_VOCAB)   # with the step files, all that a run folder holds


def output_limit(length, trained_max_len=None):
    """Longest output decoded for a sequence of `length` tokens: 2·length + 10, or the run's trained limit
    (`trained_max_len`, from its longest training target) when that is larger."""
    return max(trained_max_len or 0, 2 * length + 10)


def holds_run(folder):
    """Whether `folder` holds a saved run (its manifest)."""
    return os.path.exists(os.path.join(folder, MANIFEST))


def write_run_files(folder, train_config, model_config, src_vocab, tgt_vocab):
    """config.json ({"train": train_config, "model": model_config}) and the vocabularies, once per new run."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, CONFIG), {"train": train_config, "model": model_config})
    src_vocab.save(os.path.join(folder, SRC_VOCAB))
    tgt_vocab.save(os.path.join(folder, TGT_VOCAB))


def saved_train_options(folder):
    """The "train" section of the run's config.json: the TrainConfig fields it was saved with."""
    saved = read_json(os.path.join(folder, CONFIG))
    options = saved.get("train") if isinstance(saved, dict) else None
    if not isinstance(options, dict):
        raise CheckpointError(f"{os.path.join(folder, CONFIG)}: no training configuration")
    return options


def trained_max_len(folder):
    """The output limit the run's final test decodes with (its training state's `max_len`), or None."""
    state = CheckpointDir(folder).manifest().get("state")
    try:
        return check_int("max_len", state.get("max_len") if isinstance(state, dict) else None, low=1)
    except ValueError:   # a manifest without one: the sources' own limit applies
        return None


def load_model(folder, which="best"):
    """(model, src_vocab, tgt_vocab, saved config.json) of the run in `folder`, with its `which` weights ("best":
    the ones its final test scored; "weights": the last step's); CheckpointError if unusable."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: no such checkpoint directory")
    path = os.path.join(folder, CONFIG)
    saved = read_json(path)
    try:
        if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
            raise ValueError("no 'model' section")
        model = Seq2Seq(**saved["model"])
    except (TypeError, ValueError, MemoryError) as e:
        raise CheckpointError(f"{path}: not a usable lstm_np configuration ({e})") from None
    vocabs = []
    for name in (SRC_VOCAB, TGT_VOCAB):
        path = os.path.join(folder, name)
        d = read_json(path)
        try:
            vocabs.append(Vocab.from_dict(d))
        except ValueError as e:
            raise CheckpointError(f"{path}: not a usable vocabulary ({e})") from None
    src_vocab, tgt_vocab = vocabs
    if (len(src_vocab), len(tgt_vocab)) != (model.config["src_vocab_size"], model.config["tgt_vocab_size"]):
        raise CheckpointError(f"{folder}: vocabulary sizes do not match {CONFIG}")
    ckpt = CheckpointDir(folder)
    assign_parameters(model.named_parameters(), ckpt.load(which), ckpt.current(which))
    return model, src_vocab, tgt_vocab, saved


def remove_run(folder):
    """Delete the files of a saved run (only those lstm_np writes), for --overwrite."""
    for name in os.listdir(folder):
        if name in RUN_FILES or STEP_FILE.fullmatch(name) or name.startswith(TEMP_PREFIX):
            os.remove(os.path.join(folder, name))
