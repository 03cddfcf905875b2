"""The training batches: --group_by_length (batches of similar lengths, drawn from the run's
seed and the epoch, split over processes as the random order is) and --pad_to_multiple_of."""

import torch
from torch.utils.data import BatchSampler, DistributedSampler

from pipeline.data import MEGA_BATCH, LengthGroupedBatches, batch_loader

NUM_EXAMPLES = 1001  # odd: two processes' shares need the padding DistributedSampler adds


def mnli_like_lengths(num_examples=NUM_EXAMPLES, seed=0):
    """Real tokens per example, 6 to 60, most of them short (as in MNLI)."""
    generator = torch.Generator().manual_seed(seed)
    return 6 + torch.empty(num_examples).exponential_(1 / 14, generator=generator).clamp(max=54).long()


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def padded_positions(batches, lengths):
    """Token positions of the batches once each is cut to its longest example."""
    return sum(len(batch) * int(lengths[batch].max()) for batch in batches)


def test_each_epoch_holds_every_example_once_in_an_order_set_by_the_seed_and_the_epoch():
    lengths = mnli_like_lengths()
    sampler = LengthGroupedBatches(lengths, batch_size=8, seed=3)
    first = epoch_batches(sampler, 0)
    assert sorted(i for batch in first for i in batch) == list(range(NUM_EXAMPLES))
    assert len(first) == len(sampler) == 126  # 1001 / 8: 125 full batches and one of 1
    assert [len(batch) for batch in first] == [8] * 125 + [1]
    # Another sampler with the same seed gives the same epoch (what a resumed run relies on).
    assert epoch_batches(LengthGroupedBatches(lengths, batch_size=8, seed=3), 0) == first
    assert epoch_batches(sampler, 1) != first
    assert epoch_batches(LengthGroupedBatches(lengths, batch_size=8, seed=4), 0) != first


def test_grouped_batches_carry_little_padding_and_come_in_no_order_of_length():
    lengths = mnli_like_lengths()
    grouped = epoch_batches(LengthGroupedBatches(lengths, batch_size=8, seed=3), 0)
    shuffled = list(BatchSampler(DistributedSampler(range(NUM_EXAMPLES), 1, 0, seed=3), 8, False))
    real = int(lengths.sum())
    assert padded_positions(grouped, lengths) < 1.1 * real  # sorted mega-batches: little padding
    assert padded_positions(shuffled, lengths) > 1.5 * real
    longest = [int(lengths[batch].max()) for batch in grouped[:MEGA_BATCH]]
    assert longest != sorted(longest, reverse=True) and longest != sorted(longest)


def test_the_processes_kth_batches_together_are_the_kth_batch_of_one_process_with_the_global_size():
    lengths = mnli_like_lengths()
    single = epoch_batches(LengthGroupedBatches(lengths, batch_size=8, seed=3), 2)
    shares = [
        epoch_batches(LengthGroupedBatches(lengths, batch_size=4, seed=3, num_replicas=2, rank=rank), 2)
        for rank in (0, 1)
    ]
    # As many batches and examples in each process as the random order gives it.
    random_order = DistributedSampler(range(NUM_EXAMPLES), 2, 0, seed=3)
    assert len(shares[0]) == len(shares[1]) == len(BatchSampler(random_order, 4, False)) == len(single)
    assert sum(map(len, shares[0])) == sum(map(len, shares[1])) == len(random_order) == 501
    for k, batch in enumerate(single[:-1]):
        assert sorted(shares[0][k] + shares[1][k]) == sorted(batch), k
    # The last, shorter batch is padded with the epoch's first example, as DistributedSampler pads.
    assert sorted(shares[0][-1] + shares[1][-1]) == sorted(single[-1] + single[0][:1])


def test_each_batch_is_cut_to_its_longest_example_rounded_up_to_the_multiple():
    lengths = mnli_like_lengths(64)
    mask = (torch.arange(64) < lengths[:, None]).long()
    features = {
        "input_ids": torch.randint(5, 40, mask.shape, generator=torch.Generator().manual_seed(0)) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(mask),
        "labels": torch.arange(64) % 3,
    }
    widths = set()
    for batch in batch_loader(features, 8, shuffle=True, seed=1, group_by_length=True, pad_to_multiple_of=16):
        longest = int(batch["attention_mask"].sum(dim=1).max())
        assert batch["input_ids"].shape[1] == min(64, -(-longest // 16) * 16)
        widths.add(batch["input_ids"].shape[1])
    assert len(widths) > 1


def test_fewer_examples_than_processes_still_give_every_process_an_example():
    # DistributedSampler repeats its examples then: so does the grouped order's padding.
    shares = [
        list(LengthGroupedBatches(torch.tensor([5]), 4, seed=0, num_replicas=4, rank=r)) for r in range(4)
    ]
    assert shares == [[[0]]] * 4
