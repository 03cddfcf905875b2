"""Augment a task's training file TinyBERT's way, into a transfer set the teacher labels.

    python augment.py --model_config_json jsons/DistillBertToTiny.json --task_name mnli \
        --data_dir glue/MNLI --output transfer.tsv --n 8            # neighbours in the teacher's embeddings
    python augment.py ... --source mlm --mlm bert-base-uncased/      # a masked language model's guesses

Each example gives --n new ones. In each, every word of both texts is replaced, with
probability --replace_prob, by one of its --candidates closest words: its nearest neighbours in
an embedding table (by default the teacher's own input embeddings, so nothing beyond the teacher
is needed), or a masked language model's top guesses for it in its sentence (any Hugging Face
BertForMaskedLM folder with the student's vocabulary). As in TinyBERT, only words that are a
single word piece are replaced (the vocabulary's whole words); special tokens, punctuation and
words split into pieces stay as they are. TextBrewer's token-level helpers (masking, deleting,
...) can follow (--token_ops). New examples equal to their original are not written.

The output keeps the input's layout (GLUE's TSV, or your CSV / TSV / JSON Lines; a dataset's
train split, --dataset, gives JSON Lines with its columns), with the label column set to '-':
main.py --transfer_file trains on such examples from the teachers' outputs alone. The same seed
gives the same file.
"""

import argparse
import dataclasses
import logging
import os
import random
import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from distillation import atomic_write_text, data_utils, file_sha256
from pipeline.checkpoints import read_tensor
from pipeline.commands import errors_in_one_line, start_logging
from pipeline.model_config import parse_model_config
from pipeline.options import (
    add_data_source,
    add_model_config_json,
    add_seed,
    add_task_options,
    add_which,
    custom_columns,
)
from pipeline.tasks import open_task
from pipeline.trained_models import select_entry

logger = logging.getLogger("augment")

UNLABELLED = "-"  # the label written into the new examples: the teacher gives theirs
TOKEN_OPS = {
    "masking": data_utils.masking,
    "deleting": data_utils.deleting,
    "n_gram_sampling": data_utils.n_gram_sampling,
    "short_disorder": data_utils.short_disorder,
    "long_disorder": data_utils.long_disorder,
}
EMBEDDING_KEY = "bert.embeddings.word_embeddings.weight"


class Words:
    """The words of a text as the model's tokenizer reads them: its word pieces, their places in
    the text, and which of them may be replaced."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.special = set(tokenizer.all_special_tokens)

    def split(self, text):
        """(word pieces, their (start, end) in text, the positions of the replaceable ones): a
        word that is one whole piece of letters, not a special token."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        tokens = self.tokenizer.convert_ids_to_tokens(encoded["input_ids"])
        word_ids = encoded.word_ids()
        pieces = Counter(word_ids)
        positions = [
            i
            for i, (token, word) in enumerate(zip(tokens, word_ids))
            if word is not None and pieces[word] == 1 and token.isalpha() and token not in self.special
        ]
        return tokens, encoded["offset_mapping"], positions


def whole_word_ids(tokenizer):
    """The vocabulary's ids that are whole words (no '##' piece, no special or [unusedN] token)."""
    special = set(tokenizer.all_special_tokens)
    return sorted(
        i
        for token, i in tokenizer.get_vocab().items()
        if token.isalpha() and token not in special and not token.startswith("##")
    )


class EmbeddingNeighbours:
    """A word's candidates: its nearest whole words by cosine similarity in an embedding table."""

    def __init__(self, embeddings, tokenizer, k):
        self.ids = torch.tensor(whole_word_ids(tokenizer))
        table = embeddings[self.ids].float()
        self.unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.vocab = tokenizer.get_vocab()
        self.tokens = tokenizer.convert_ids_to_tokens(self.ids.tolist())
        self.k = k
        self.cache = {}

    def guesses(self, tokens, positions):
        """{position: candidates} for the words at `positions`."""
        return {position: self._neighbours(tokens[position]) for position in positions}

    def _neighbours(self, word):
        if word not in self.cache:
            row = self.unit[int(torch.searchsorted(self.ids, self.vocab[word]))]
            order = (self.unit @ row).topk(min(self.k + 1, len(self.tokens))).indices.tolist()
            self.cache[word] = [self.tokens[i] for i in order if self.tokens[i] != word][: self.k]
        return self.cache[word]


class MaskedLMGuesses:
    """A word's candidates: a masked language model's top guesses at its place in the text."""

    def __init__(self, folder, tokenizer, k):
        from transformers import BertForMaskedLM

        self.model = BertForMaskedLM.from_pretrained(folder).eval()
        self.tokenizer, self.k = tokenizer, k
        allowed = torch.full((self.model.config.vocab_size,), float("-inf"))
        allowed[[i for i in whole_word_ids(tokenizer) if i < len(allowed)]] = 0
        self.allowed = allowed

    @torch.no_grad()
    def guesses(self, tokens, positions):
        """{position: candidates}: one batch of copies of the text, each with one word masked."""
        if not positions:
            return {}
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        batch = torch.tensor(
            [[self.tokenizer.cls_token_id, *ids, self.tokenizer.sep_token_id]] * len(positions)
        )
        rows = torch.arange(len(positions))
        columns = torch.tensor(positions) + 1  # after [CLS]
        batch[rows, columns] = self.tokenizer.mask_token_id
        logits = self.model(input_ids=batch).logits[rows, columns] + self.allowed
        top = logits.topk(min(self.k + 1, int(torch.isfinite(self.allowed).sum()))).indices.tolist()
        return {
            position: [t for t in self.tokenizer.convert_ids_to_tokens(row) if t != tokens[position]][
                : self.k
            ]
            for position, row in zip(positions, top)
        }


def augment_text(text, words_of, source, rng, replace_prob):
    """One new version of text: each replaceable word swapped, with probability replace_prob,
    for one of its candidates (drawn from rng); the rest of the text as it was."""
    tokens, spans, positions = words_of.split(text)
    chosen = [i for i in positions if rng.random() < replace_prob]
    guesses = source.guesses(tokens, chosen)
    pieces, last = [], 0
    for i in chosen:
        if guesses.get(i):
            start, end = spans[i]
            pieces += [text[last:start], rng.choice(guesses[i])]
            last = end
    return "".join(pieces) + text[last:]


def apply_token_ops(text, ops, tokenizer):
    """TextBrewer's token-level helpers on the text's word pieces (numpy's seeded generator)."""
    if not ops or not text:
        return text
    tokens = tokenizer.tokenize(text)
    for op in ops:
        tokens = TOKEN_OPS[op](tokens)
    return tokenizer.convert_tokens_to_string(tokens)


def augment_rows(rows, columns, n, words_of, source, seed, replace_prob, token_ops, tokenizer):
    """The new rows: n per row, each from its own generator (seed, row, copy), so a row's new
    examples do not depend on the others'."""
    text_a, text_b, label = columns
    new_rows = []
    for index, row in enumerate(tqdm(rows, desc="augmenting", unit="example")):
        for copy in range(n):
            rng = random.Random(f"{seed}:{index}:{copy}")
            np.random.seed(rng.randrange(2**32))  # TextBrewer's helpers draw from numpy's generator
            new = dict(row)
            for column in (text_a, text_b):
                if column is not None:
                    text = augment_text(row[column], words_of, source, rng, replace_prob)
                    new[column] = apply_token_ops(text, token_ops, tokenizer)
            if all(new[c] == row[c] for c in (text_a, text_b) if c is not None):
                continue  # nothing changed: no new example
            if label in new:
                new[label] = UNLABELLED
            new_rows.append(new)
    return new_rows


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add_model_config_json(
        parser, help="The JSON of the run: its student's vocabulary, and the embeddings of --which."
    )
    add_which(parser, "teacher0", "The model whose input embeddings give the neighbours.")
    add_task_options(parser)
    add_data_source(parser, help="The task's folder (its train file is augmented).")
    add(
        "--input",
        default=None,
        help="Another file of the task's layout to augment (default: its train file).",
    )
    add("--output", required=True, help="The transfer file to write (the input's layout).")
    add("--n", type=int, default=8, help="New examples per example (TinyBERT: 20).")
    add(
        "--replace_prob",
        type=float,
        default=0.4,
        help="Each word's chance of being replaced (TinyBERT: 0.4).",
    )
    add("--candidates", type=int, default=15, help="Candidates per word (TinyBERT: 15).")
    add("--source", choices=["embedding", "mlm"], default="embedding")
    add("--mlm", default=None, help="With --source mlm: a Hugging Face BertForMaskedLM folder.")
    add("--token_ops", default="", help=f"Comma-separated, applied after: {', '.join(TOKEN_OPS)}.")
    add("--max_examples", type=int, default=None, help="Augment only the first this many examples.")
    add_seed(parser, 42)
    return parser


def check(args):
    problems = []
    if args.n < 1 or args.candidates < 1:
        problems.append("--n and --candidates must be at least 1")
    if not 0 < args.replace_prob <= 1:
        problems.append(f"--replace_prob must be in (0, 1], got {args.replace_prob}")
    unknown = [op for op in filter(None, args.token_ops.split(",")) if op not in TOKEN_OPS]
    if unknown:
        problems.append(f"--token_ops: unknown {', '.join(unknown)} (known: {', '.join(TOKEN_OPS)})")
    if (args.source == "mlm") != (args.mlm is not None):
        problems.append("--source mlm and --mlm FOLDER go together")
    return problems


def masked_lm_vocabulary_check(folder, student_vocab):
    vocab = os.path.join(folder, "vocab.txt")
    if not os.path.isfile(vocab):
        raise FileNotFoundError(f"--mlm {folder}: no vocab.txt (a BertForMaskedLM folder has one)")
    if file_sha256(vocab) != file_sha256(student_vocab):
        raise ValueError(
            f"--mlm {folder}: its vocab.txt differs from the student's ({student_vocab}); "
            "its guesses must be words the student reads"
        )


def run(args):
    setup = parse_model_config(args.model_config_json)
    task, data_dir = open_task(args.task_name, args.data_dir, custom_columns(args), args.dataset)
    student = setup.student
    tokenizer = student.tokenizer
    if args.source == "mlm":
        masked_lm_vocabulary_check(args.mlm, student.vocab_file)
        source = MaskedLMGuesses(args.mlm, tokenizer, args.candidates)
    else:
        entry = select_entry(setup, args.which)
        if entry.own_features:
            raise ValueError(f"--which {args.which}: its vocabulary differs from the student's")
        if not entry.checkpoint:
            raise ValueError(f"--which {args.which}: {entry.where}.checkpoint is null: no embeddings to read")
        source = EmbeddingNeighbours(
            read_tensor(entry.checkpoint, EMBEDDING_KEY, "the input embeddings"), tokenizer, args.candidates
        )
    path = args.input or task.data_file(data_dir, "train")
    table = task.read_table(path)
    rows = table.rows[: args.max_examples] if args.max_examples else table.rows
    start = time.perf_counter()
    new_rows = augment_rows(
        rows,
        task.train_columns,
        args.n,
        Words(tokenizer),
        source,
        args.random_seed,
        args.replace_prob,
        [op for op in args.token_ops.split(",") if op],
        tokenizer,
    )
    if not new_rows:
        raise ValueError(f"{path}: no example changed (no replaceable word, or --replace_prob too low)")
    atomic_write_text(args.output, task.table_text(dataclasses.replace(table, rows=new_rows)))
    seconds = time.perf_counter() - start
    logger.info(
        "wrote %d new examples from %d (%d asked for) to %s in %.1f s",
        len(new_rows),
        len(rows),
        args.n * len(rows),
        args.output,
        seconds,
    )
    return len(new_rows), seconds


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    problems = check(args)
    if problems:
        parser.exit(2, f"{parser.prog}: error: {'; '.join(problems)}\n")
    start_logging()
    with errors_in_one_line(logger):
        run(args)


if __name__ == "__main__":
    main()
