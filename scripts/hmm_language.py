"""A synthetic language with exact likelihood: a hidden-Markov "word" source.

The source has a dictionary of words (each a few symbols long) and a sparse bigram over words.
Its hidden state is (word, position in the word): it emits the word's symbols one by one and,
after a word's last symbol, moves to one of that word's few successors. Each emitted symbol is
replaced, with probability `noise`, by a token drawn uniformly from all `n_outputs` output
tokens, so every sequence has finite likelihood. Output tokens are 0 .. n_outputs - 1; the words
use only some of them (in fig1_tiny: every symbol but the last output, the eos, which only
noise writes).

  log_prob(x)   exact log p(x) by the forward algorithm (float64, rescaled at every step);
  can_emit(x)   whether the noise-free source (noise = 0) can emit x, by exact set reachability;
  sample(...)   independent sequences, each started afresh in a random word's first state;
  continuations(...)  a continuation of each given context, drawn from the source's exact law
                given it.

Beside it, the language as the experiments use it: the source of a run's settings, its text form
and tokenizer, the metrics of samples and completions, exact under the source, and a
multiple-choice task built from it with the exact source's own scores (the oracle).
"""
import math

import numpy as np
import torch

from experiment_common import EOS, MASK, sample_entropy

SYMBOL_NAMES = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class WordSource:
    def __init__(self, words, bigram, start, n_outputs, noise):
        """words: lists of output tokens; bigram [W, W]: row w is the law of the word after w;
        start [W]: the law of the first word; noise: the probability of a uniform replacement."""
        bigram = torch.as_tensor(bigram, dtype=torch.float64)
        start = torch.as_tensor(start, dtype=torch.float64)
        W = len(words)
        if bigram.shape != (W, W) or start.shape != (W,):
            raise ValueError(f"bigram must be [{W}, {W}] and start [{W}] for {W} words, got "
                             f"{tuple(bigram.shape)} and {tuple(start.shape)}")
        rows_sum_to_one = torch.allclose(bigram.sum(1), torch.ones(W, dtype=torch.float64))
        if not (rows_sum_to_one and abs(float(start.sum()) - 1) < 1e-9):
            raise ValueError("every row of bigram and start must sum to 1")
        if any(len(w) == 0 or min(w) < 0 or max(w) >= n_outputs for w in words):
            raise ValueError(f"words must be non-empty lists of tokens in [0, {n_outputs})")
        if not 0 <= noise <= 1:
            raise ValueError(f"noise must lie in [0, 1], got {noise}")
        self.words, self.n_outputs, self.noise = [list(w) for w in words], n_outputs, float(noise)
        # States are (word, position), word by word; first[w] is word w's first state.
        first = np.cumsum([0] + [len(w) for w in words])
        S = int(first[-1])
        self.symbol = torch.tensor([s for w in words for s in w])  # noise-free output of each state
        self.trans = torch.zeros(S, S, dtype=torch.float64)
        for w, word in enumerate(words):
            for j in range(len(word) - 1):
                self.trans[first[w] + j, first[w] + j + 1] = 1.0
            self.trans[first[w] + len(word) - 1, first[:-1]] = bigram[w]
        # The few possible next states of each state, for sampling without [n, S] rows.
        fan_out = int((self.trans > 0).sum(1).max())
        self.next_prob, self.next_state = self.trans.topk(fan_out, 1)
        self.start = torch.zeros(S, dtype=torch.float64)
        self.start[first[:-1]] = start
        # emit[s, x] = p(x | state s)
        self.emit = torch.full((S, n_outputs), self.noise / n_outputs, dtype=torch.float64)
        self.emit[torch.arange(S), self.symbol] += 1 - self.noise

    @property
    def n_states(self):
        return self.symbol.numel()

    def sample(self, n, length, generator, noise=True):
        """[n, length] token ids: n independent sequences (noise=False: from the noise-free source)."""
        state = torch.multinomial(self.start.expand(n, -1), 1, generator=generator).squeeze(1)
        return self._emit_from(state, length, generator, noise)

    def continuations(self, contexts, length, generator, noise=True):
        """[n, length] token ids: a continuation of each row of contexts [n, C], drawn from the
        source's exact law given that row: the hidden state after the row from its posterior (the
        forward algorithm's last vector, one transition on), then the source's own steps. A row the
        source cannot emit (log p = -inf) is refused."""
        total, last = self._forward(contexts)
        if bool((total == -math.inf).any()):
            raise ValueError("a context has probability 0 under the source: it has no continuation")
        state = torch.multinomial(last @ self.trans, 1, generator=generator).squeeze(1)
        return self._emit_from(state, length, generator, noise)

    def _emit_from(self, state, length, generator, noise):
        """[n, length] tokens emitted from the states [n] of the first position on."""
        n = state.numel()
        out = torch.empty(n, length, dtype=torch.long)
        for i in range(length):
            if i:
                pick = torch.multinomial(self.next_prob[state], 1, generator=generator)
                state = self.next_state[state].gather(1, pick).squeeze(1)
            token = self.symbol[state]
            if noise and self.noise > 0:
                replace = torch.rand(n, generator=generator, dtype=torch.float64) < self.noise
                uniform = torch.randint(self.n_outputs, (n,), generator=generator)
                token = torch.where(replace, uniform, token)
            out[:, i] = token
        return out

    def log_prob(self, x):
        """[n] exact log p(x) of the rows of x [n, length] (float64): the forward algorithm,
        its state vector renormalised at every step and the normalisers' logs summed."""
        return self._forward(x)[0]

    def _forward(self, x):
        """([n] log p(x), [n, S] the law of the last hidden state given the row) of the rows of x
        [n, length], length >= 1 (float64; a row of probability 0 has a zero law)."""
        x = torch.as_tensor(x)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.n_outputs):
            raise ValueError(f"tokens must lie in [0, {self.n_outputs}), got [{int(x.min())}, {int(x.max())}]")
        emit = self.emit.t()  # [n_outputs, S]
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        forward = None
        for i in range(x.shape[1]):
            prior = self.start.expand(x.shape[0], -1) if i == 0 else forward @ self.trans
            joint = prior * emit[x[:, i]]
            norm = joint.sum(1, keepdim=True)
            total += norm.squeeze(1).log()
            forward = joint / norm.clamp_min(1e-300)  # a zero row stays zero (and its total -inf)
        return total, forward

    def can_emit(self, x):
        """[n] bool: whether the noise-free source gives the row of x [n, length] a positive
        probability (some state path emits it exactly), by boolean reachability, not floats."""
        x = torch.as_tensor(x)
        allowed = self.trans > 0
        reach = (self.start > 0) & (self.symbol == x[:, :1])
        for i in range(1, x.shape[1]):
            reach = ((reach.double() @ allowed.double()) > 0) & (self.symbol == x[:, i:i + 1])
        return reach.any(1)


def random_source(seed, n_symbols, n_words, min_len, max_len, successors, noise, n_outputs=None):
    """A seeded source: n_words distinct random words of min_len..max_len symbols (tokens
    0 .. n_symbols - 1), each followed by one of `successors` random words with Dirichlet(1)
    weights; the first word is uniform; noise is uniform over n_outputs (default n_symbols) tokens."""
    if successors > n_words:
        raise ValueError(f"successors ({successors}) cannot exceed n_words ({n_words})")
    rng = np.random.default_rng(seed)
    words = []
    while len(words) < n_words:
        word = rng.integers(n_symbols, size=rng.integers(min_len, max_len + 1)).tolist()
        if word not in words:
            words.append(word)
    bigram = np.zeros((n_words, n_words))
    for w in range(n_words):
        bigram[w, rng.choice(n_words, successors, replace=False)] = rng.dirichlet(np.ones(successors))
    return WordSource(words, bigram, np.full(n_words, 1 / n_words), n_outputs or n_symbols, noise)


def entropy_per_token(source, length, n, generator):
    """(mean, standard error) of -log p(x) / length over n sequences sampled from the source: a
    Monte Carlo estimate of H(X_1 .. X_length) / length, the entropy of its length-token blocks."""
    nll = torch.cat([-source.log_prob(source.sample(min(4096, n - i), length, generator)) / length
                     for i in range(0, n, 4096)])
    return float(nll.mean()), float(nll.std() / len(nll) ** 0.5)


# ---------------------------------------------------------------------------
# The language as fig1_tiny.py and fast_sampling_quality.py use it
# ---------------------------------------------------------------------------

def source_of(settings):
    """The seeded source of a run's settings (fig1_tiny.py's flags, or its settings.json); its
    outputs are the symbols 0 .. symbols - 1 and the eos (id symbols), which only the noise writes
    inside a document. Its noise is uniform over every token a model can write (all but the mask),
    so every sample has finite likelihood."""
    return random_source(settings.language_seed, settings.symbols, settings.words, settings.word_min,
                         settings.word_max, settings.successors, settings.noise, n_outputs=settings.symbols + 1)


def make_tokenizer(n_symbols):
    """WordLevel over space-separated symbols: symbol i is id i, eos is id n_symbols (also the
    pad), the mask id n_symbols + 1."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {name: i for i, name in enumerate(SYMBOL_NAMES[:n_symbols])}
    vocab[EOS], vocab[MASK] = n_symbols, n_symbols + 1
    tok = Tokenizer(models.WordLevel(vocab, unk_token=MASK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([EOS, MASK])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, mask_token=MASK)


def to_text(row, n_symbols):
    return " ".join(EOS if t == n_symbols else SYMBOL_NAMES[t] for t in row.tolist())


def sample_metrics(source, blocks, eos):
    """Unconditional blocks [n, block_size]: gen-NLL per document token (-log p of the first
    block_size - 1 tokens, averaged), their unigram entropy, and the fraction whose last token is
    not the eos every training block ends with."""
    doc = blocks[:, :-1]
    return dict(gen_nll=float((-source.log_prob(doc) / doc.shape[1]).mean()),
                entropy=sample_entropy(doc), no_final_eos=float((blocks[:, -1] != eos).double().mean()))


def completion_metrics(source, prompts, completions, eos):
    """Completions [n, C] of prompts [n, P] (a block's last C tokens, the eos slot last): the
    failure rate (the noise-free source cannot emit prompt + completion, or the last token is not
    the eos) and the gen-NLL per completion token, -log p(completion | prompt) / (C - 1)."""
    full = torch.cat([prompts, completions[:, :-1]], 1)
    fail = ~source.can_emit(full) | (completions[:, -1] != eos)
    nll = (source.log_prob(prompts) - source.log_prob(full)) / (completions.shape[1] - 1)
    return dict(failure=float(fail.double().mean()), gen_nll=float(nll.mean()))


def choice_task(source, n, context_length, answer_length, generator, n_choices=4, rounds=1000):
    """n multiple-choice items: (contexts [n, C], choices [n, n_choices, A], gold [n]).
    A context is the start of a noise-free document; the right answer (choices[i, gold[i]]) is drawn
    from the source, noise included, after it (continuations); each wrong answer is the source's
    continuation of another, independent noise-free context, kept only if the noise-free source
    cannot emit the item's context followed by it, and if it differs from the item's other choices.
    Right and wrong answers are thus drawn alike, and only their fit to the context tells them
    apart. gold is uniform over the positions. Stops with ValueError if `rounds` candidates per item
    do not give enough wrong answers (a language whose noise-free source can emit almost anything)."""
    contexts = source.sample(n, context_length, generator, noise=False)
    right = source.continuations(contexts, answer_length, generator)
    wrong = [[] for _ in range(n)]
    for _ in range(rounds):
        need = [i for i in range(n) if len(wrong[i]) < n_choices - 1]
        if not need:
            break
        others = source.sample(len(need), context_length, generator, noise=False)
        candidates = source.continuations(others, answer_length, generator)
        impossible = ~source.can_emit(torch.cat([contexts[need], candidates], 1))
        for i, candidate, keep in zip(need, candidates, impossible.tolist()):
            if keep and not any(torch.equal(candidate, c) for c in [right[i], *wrong[i]]):
                wrong[i].append(candidate)
    if any(len(w) < n_choices - 1 for w in wrong):
        raise ValueError(f"{rounds} candidate continuations did not give {n_choices - 1} that the noise-free source "
                         f"cannot emit after every context of {context_length} tokens (answers of {answer_length})")
    gold = torch.randint(n_choices, (n,), generator=generator)
    choices = torch.stack([torch.stack(w[:g] + [r] + w[g:]) for w, r, g in zip(wrong, right, gold.tolist())])
    return contexts, choices, gold


def choice_log_probs(source, contexts, choices):
    """[n, K] exact log p(choice | context) = log p(context + choice) - log p(context) of
    contexts [n, C] and choices [n, K, A] (float64)."""
    n, K, A = choices.shape
    joint = source.log_prob(torch.cat([contexts.repeat_interleave(K, 0), choices.reshape(n * K, A)], 1))
    return joint.view(n, K) - source.log_prob(contexts)[:, None]


def oracle_accuracy(log_probs, gold, tie=1e-9):
    """Accuracy [n] per item of picking the highest entry of its row of log_probs [n, K], ties split
    evenly (1 / m if gold is one of m best). Entries within `tie` of the row's best count as tied:
    sequences of equal probability (say, two wrong answers that each need the same noise) can come
    out of the forward algorithm a rounding error apart."""
    best = log_probs >= log_probs.max(1, keepdim=True).values - tie
    return best.gather(1, gold[:, None]).squeeze(1).double() / best.sum(1)
