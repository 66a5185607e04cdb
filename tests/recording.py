"""The recording launcher of test_resume.py: llada_cpt.py that writes every training draw (rank,
step, micro-step, p_mask, the clean block and its corruption) to DRAWS/draws-<rank>.jsonl as it
happens, and can kill its own process with SIGKILL at a chosen moment.

    DRAWS=dir [KILL_AT=step:STEP|save:STEP KILL_RANK=r] python tests/recording.py ARGS

KILL_AT=step:STEP kills rank KILL_RANK during the second micro-batch after optimizer step STEP;
save:STEP while checkpoint-STEP is written (once the Trainer has written its part: model,
optimizer, RNG and trainer state; before the run settings and the completion marker). `install`
also records a run in the test process."""
import json
import os
import signal
import sys

import transformers

import llada_cpt
import xdlm_trainer


def install(draws, kill_at="none:0", kill_rank=0, setattr=setattr):
    """Patches the Trainer and the corruption (through `setattr`: pass monkeypatch.setattr to undo it)."""
    where, _, at = kill_at.partition(":")
    at = int(at)
    Trainer = llada_cpt.XDLMTrainer
    real_rate, real_corrupt = Trainer.training_mask_rate, xdlm_trainer.corrupt
    real_save = transformers.Trainer._save_checkpoint  # what CheckpointingMixin._save_checkpoint calls first
    pending = []

    def training_mask_rate(self, batch_size, device, step, micro):
        if where == "step" and step == at and micro == 1 and self.args.process_index == kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)
        p_mask = real_rate(self, batch_size, device, step, micro)
        pending.append(dict(rank=self.args.process_index, step=step, micro=micro, p_mask=p_mask.tolist()))
        return p_mask

    def corrupt(clean_ids, *args, **kwargs):
        noisy = real_corrupt(clean_ids, *args, **kwargs)
        if pending:
            record = pending.pop()
            record.update(clean=clean_ids.tolist(), noisy=noisy.tolist())
            with open(os.path.join(draws, "draws-%d.jsonl" % record["rank"]), "a") as f:
                f.write(json.dumps(record) + "\n")
        return noisy

    def _save_checkpoint(self, model, trial):
        real_save(self, model, trial)
        if where == "save" and self.state.global_step == at and self.args.process_index == kill_rank:
            os.kill(os.getpid(), signal.SIGKILL)

    os.makedirs(draws, exist_ok=True)
    setattr(Trainer, "training_mask_rate", training_mask_rate)
    setattr(transformers.Trainer, "_save_checkpoint", _save_checkpoint)
    setattr(xdlm_trainer, "corrupt", corrupt)


if __name__ == "__main__":
    install(os.environ["DRAWS"], os.environ.get("KILL_AT", "none:0"), int(os.environ.get("KILL_RANK", "0")))
    llada_cpt.main(sys.argv[1:])
