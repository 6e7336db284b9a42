"""The memory arithmetic of the GPU profiles, checked on this CPU: the model shapes against
the published parameter counts, and every GPU profile on an 80 GB and a 24 GB card through
the preflight's GPU check with a stand-in for ``torch.cuda``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from people_relation.training.memory import (
    EVALUATION,
    GENERATING,
    GREEDY,
    HELD,
    STEP,
    VLLM_CUDA_GRAPH_GIB,
    ModelShape,
    TrainingNeed,
    training_need,
    zero_stage,
)
from people_relation.training.preflight import IDLE_IN_USE_GIB, assumed_gpus, check_gpus, needed_gpus, report

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
# what torch.cuda.mem_get_info reports as the total of an 80 GB H100; a card sold as 24 GB
# counted as 24 x 10^9 bytes, 22.35 GiB (the smallest of them report about that)
CARDS = {"80GB": 85_029_158_912 / GIB, "24GB": 24e9 / GIB}
IN_USE_GIB = IDLE_IN_USE_GIB  # the driver's share and the checking process's context on an idle card


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
    # asleep, vLLM's share counts only while it generates, in place of the other parts
    assert asleep.largest_part == GENERATING and GENERATING not in awake.parts()
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


def item(need: TrainingNeed, part: str, what: str) -> float:
    """The GiB of the one item of ``part`` whose description starts with ``what``."""
    (found,) = [i.gib for i in need.items if i.part == part and i.what.startswith(what)]
    return found


def needs(settings, project_root, name: str, total_gib: float) -> TrainingNeed:
    prof = settings.profile(name)
    zero = zero_stage(project_root / prof.launch.accelerate_config if prof.launch.accelerate_config else None)
    return training_need(prof, SHAPES[prof.model.source], total_gib, zero)


def test_swiglu_activations_are_counted_from_the_real_mlp_width():
    """Qwen2.5's MLP is 5.3h wide (7B) and 5.4h (3B), not the 4h the 34 bytes of a layer assume."""
    assert QWEN25_7B.intermediate_size / QWEN25_7B.hidden_size == pytest.approx(5.29, abs=0.01)
    assert QWEN25_3B.intermediate_size / QWEN25_3B.hidden_size == pytest.approx(5.38, abs=0.01)
    # 15h for attention and norms, 2h + 8I for the MLP, per token and layer
    assert QWEN25_7B.layer_activation_bytes() == 17 * 3584 + 8 * 18944 == 212_480
    assert QWEN25_3B.layer_activation_bytes() == 17 * 2048 + 8 * 11008 == 122_880
    assert QWEN25_7B.layer_activation_bytes() > 34 * 3584 * 1.7  # what the 4h count missed
    assert QWEN25_7B.forward_peak_bytes() == 6 * (18944 + 3584)


def test_the_parts_of_a_run_never_overlap_and_the_largest_counts(settings, project_root):
    need = needs(settings, project_root, "qwen2.5-7b", 80.0)
    parts = need.parts()
    assert list(parts) == [STEP, EVALUATION, GREEDY]
    assert need.total_gib == pytest.approx(need.held_gib + max(parts.values()))
    assert need.describe()[0].startswith(HELD) and need.describe()[-1].startswith("total: ")


def test_zero3_gathers_the_whole_policy_for_the_greedy_validation(settings, project_root):
    """TRL's unwrap_model_for_generation gathers every weight on every GPU (ds3_gather_for_generation)."""
    published = needs(settings, project_root, "qwen2.5-7b", 80.0)
    assert round(item(published, GREEDY, "the whole policy gathered"), 1) == 14.2
    # and DeepSpeed keeps up to stage3_max_live_parameters (1e9) gathered in every forward pass
    assert round(item(published, STEP, "ZeRO-3 live parameters"), 1) == 1.9
    assert round(item(published, EVALUATION, "ZeRO-3 live parameters"), 1) == 1.9
    # 96 rows over 3 processes: 32 rows of 320 + 1,024 tokens at once
    assert round(item(published, GREEDY, "KV cache (32 rows x 1344 tokens"), 1) == 2.3
    assert round(item(published, EVALUATION, "forward of 64 sampled completions"), 1) == 10.8
    assert published.largest_part == GREEDY and round(published.total_gib, 1) == 61.8
    lora = needs(settings, project_root, "qwen2.5-7b-lora", 80.0)  # one process, no ZeRO: nothing gathered
    assert not [i for i in lora.items if "gathered" in i.what or "ZeRO-3" in i.what]


def test_the_lora_profiles_greedy_batch_holds_a_kv_cache(settings, project_root):
    """64 rows (validation.batch_size) x (320 + 1,024) tokens x 2 x layers x kv heads x head dim x 2 bytes."""
    seven = needs(settings, project_root, "qwen2.5-7b-lora", 80.0)
    three = needs(settings, project_root, "qwen2.5-3b-lora", 24e9 / GIB)
    assert item(seven, GREEDY, "KV cache (64 rows x 1344 tokens") == pytest.approx(64 * 1344 * 57_344 / GIB)
    assert round(item(seven, GREEDY, "KV cache"), 1) == 4.6
    assert round(item(three, GREEDY, "KV cache"), 1) == 3.0
    assert round(item(three, EVALUATION, "forward of 64 sampled completions"), 1) == 6.3


def test_vllm_asleep_keeps_its_cuda_graph_pool(settings, project_root):
    asleep = needs(settings, project_root, "qwen2.5-3b-lora", 24e9 / GIB)
    assert item(asleep, HELD, "vLLM's CUDA-graph pool") == VLLM_CUDA_GRAPH_GIB == 1.0
    share = asleep.vllm.share_gib
    assert item(asleep, GENERATING, "colocated vLLM share") == pytest.approx(share - VLLM_CUDA_GRAPH_GIB)
    awake = needs(settings, project_root, "qwen2.5-7b-lora", 80.0)  # the graphs are inside the share held all along
    assert item(awake, HELD, "colocated vLLM share") == pytest.approx(awake.vllm.share_gib)
    assert not [i for i in awake.items if "CUDA-graph" in i.what]


def test_the_3b_profile_on_a_16_gib_card_is_refused_naming_the_setting(settings, project_root):
    """The base, adapters, context and graph pool (8.7 GiB) and vLLM's half of the card while it
    generates (8.0) exceed what an idle 16 GiB card leaves (15.5); a 24 GB card holds them."""
    prof = settings.profile("qwen2.5-3b-lora")
    checks = {c.name: c for c in check_gpus(prof, assumed_gpus(prof, 16.0), QWEN25_3B, 0)}
    training = checks["gpu 0 training"]
    assert not training.ok, report(list(checks.values()))
    assert "15.5 GiB free of 16.0, training needs 15.7" in training.detail
    assert training.fix.startswith("vllm.gpu_memory_utilization (vLLM generating: the largest part)")
    fits = {c.name: c for c in check_gpus(prof, assumed_gpus(prof, 22.4), QWEN25_3B, 0)}
    assert all(c.ok for c in fits.values()), report(list(fits.values()))
    assert "21.9 GiB free of 22.4, training needs 18.9" in fits["gpu 0 training"].detail
