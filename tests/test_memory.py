"""The memory arithmetic of the GPU profiles, checked on this CPU: the model shapes against
the published parameter counts, and every GPU profile on an 80 GB and a 24 GB card through
the preflight's GPU check with a stand-in for ``torch.cuda``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from people_relation.training.memory import ModelShape, training_need, zero_stage
from people_relation.training.preflight import check_gpus, needed_gpus, report

GIB = 1024**3
# the config.json values of the two models the GPU profiles train
QWEN25_7B = ModelShape(
    hidden_size=3584,
    intermediate_size=18944,
    num_layers=28,
    num_heads=28,
    num_kv_heads=4,
    vocab_size=152064,
    tie_word_embeddings=False,
)
QWEN25_3B = ModelShape(
    hidden_size=2048,
    intermediate_size=11008,
    num_layers=36,
    num_heads=16,
    num_kv_heads=2,
    vocab_size=151936,
    tie_word_embeddings=True,
)
SHAPES = {"Qwen/Qwen2.5-7B-Instruct": QWEN25_7B, "Qwen/Qwen2.5-3B-Instruct": QWEN25_3B}
# what torch.cuda.mem_get_info reports as the total of an 80 GB H100 and a 24 GB RTX 4090
CARDS = {"80GB": 85_029_158_912 / GIB, "24GB": 25_393_692_672 / GIB}
IN_USE_GIB = 0.5  # the driver's own share of an otherwise idle card


def gpu_profiles(settings) -> list[str]:
    return [name for name, prof in settings.profiles.items() if not prof.grpo.use_cpu]


def cuda_of(card: str, count: int) -> SimpleNamespace:
    """torch.cuda's three calls the check makes, for ``count`` idle cards of one kind."""
    total = CARDS[card]
    return SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: count,
        mem_get_info=lambda i: ((total - IN_USE_GIB) * GIB, total * GIB),
    )


def test_the_shapes_count_the_published_parameters_and_kv_cache():
    assert QWEN25_7B.parameters() == 7_615_616_512  # Qwen2.5-7B-Instruct's safetensors
    assert QWEN25_3B.parameters() == 3_085_938_688
    assert QWEN25_7B.kv_bytes_per_token() == 2 * 28 * 4 * 128 * 2 == 57_344
    assert QWEN25_3B.kv_bytes_per_token() == 36_864
    all7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert QWEN25_7B.lora_parameters(16, all7) == 40_370_176  # what PEFT reports for r=16 on all seven
    with pytest.raises(ValueError, match="lm_head"):
        QWEN25_7B.lora_parameters(16, ["lm_head"])
    assert (
        ModelShape.from_config(
            {
                "hidden_size": 2048,
                "intermediate_size": 11008,
                "num_hidden_layers": 36,
                "num_attention_heads": 16,
                "num_key_value_heads": 2,
                "vocab_size": 151936,
                "tie_word_embeddings": True,
            }
        )
        == QWEN25_3B
    )


def test_the_accelerate_configs_zero_stage_is_read(project_root):
    assert zero_stage(project_root / "configs/accelerate/deepspeed_zero3.yaml") == 3
    assert zero_stage(None) == 0


# every GPU profile, on the card it is made for and on the other one: which checks fail
EXPECTED = {
    ("qwen2.5-7b", "80GB"): set(),
    ("qwen2.5-7b", "24GB"): {"gpu 0 training", "gpu 1 training", "gpu 2 training"},
    ("qwen2.5-7b-lora", "80GB"): set(),
    ("qwen2.5-7b-lora", "24GB"): {"gpu 0 training", "gpu 0 colocated vLLM"},
    ("qwen2.5-7b-2x4", "80GB"): set(),
    ("qwen2.5-7b-2x4", "24GB"): {f"gpu {g} {part}" for g in range(4) for part in ("training", "colocated vLLM")},
    ("qwen2.5-3b-lora", "80GB"): set(),
    ("qwen2.5-3b-lora", "24GB"): set(),
}


@pytest.mark.parametrize(("name", "card"), sorted(EXPECTED))
def test_every_gpu_profile_on_an_80_and_a_24_gb_card(settings, project_root, name, card):
    assert set(gpu_profiles(settings)) == {n for n, _ in EXPECTED}  # a new GPU profile gets its rows here
    prof = settings.profile(name)
    count = 1 + max(g for ids in needed_gpus(prof).values() for g in ids)
    zero = zero_stage(project_root / prof.launch.accelerate_config if prof.launch.accelerate_config else None)
    checks = check_gpus(prof, cuda_of(card, count), SHAPES[prof.model.source], zero)
    failed = {c.name for c in checks if not c.ok}
    assert failed == EXPECTED[name, card], report(checks)
    for check in checks:
        if not check.ok:
            assert check.fix, check  # every failure names what to change
    training = next(c for c in checks if c.name == "gpu 0 training")
    assert training.notes[-1].startswith("total: ") and any("activations" in n for n in training.notes)


def test_the_24_gb_profile_needs_vllm_asleep_while_the_policy_trains(settings):
    prof = settings.profile("qwen2.5-3b-lora")
    asleep = training_need(prof, QWEN25_3B, CARDS["24GB"], 0)
    awake = training_need(
        prof.model_copy(update={"vllm": prof.vllm.model_copy(update={"sleep_mode": False})}),
        QWEN25_3B,
        CARDS["24GB"],
        0,
    )
    free = CARDS["24GB"] - IN_USE_GIB
    assert asleep.total_gib < free < awake.total_gib
    assert asleep.vllm is not None and asleep.vllm.sequences_at_once >= 64  # a third of a step's 192 at once
    # the published batch is kept: 24 accumulation steps of 1 prompt x 8 completions
    assert prof.grpo.gradient_accumulation_steps * prof.grpo.prompts_per_device * prof.grpo.num_generations == 192


def test_the_known_shapes_are_the_ones_counted_here(settings):
    from people_relation.infra.io import project_path
    from people_relation.training.preflight import KNOWN_SHAPES, model_shape

    for source, shape in SHAPES.items():
        assert model_shape(source, project_path) == (shape, KNOWN_SHAPES)  # not downloaded on this machine
    shape, why = model_shape("someone/unknown-model", project_path)
    assert shape is None and "not in configs/models/shapes.yaml" in why
    sources = {settings.profile(name).model.source for name in gpu_profiles(settings)}
    assert sources <= set(SHAPES)
