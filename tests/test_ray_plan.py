"""How `index --ray` sizes its encoder actor pool from the cluster's resources: GPU actors when there are GPUs, CPU
actors of two threads otherwise (the GPU branch is checked here; no GPU can run it on these machines)."""

from vidsearch.ray_index import EncoderPlan, encoder_plan


def test_a_cluster_with_gpus_gets_one_gpu_actor_per_gpu_and_leaves_the_cpus_to_decoding():
    assert encoder_plan({"CPU": 32.0, "GPU": 4.0}, "auto", None) == EncoderPlan("cuda", 4, 1, 0, None, 8)
    assert encoder_plan({"CPU": 8, "GPU": 1}, "cuda", 16).batch_size == 16  # --batch wins


def test_device_cpu_keeps_off_the_gpus_and_cpu_actors_run_two_torch_threads():
    assert encoder_plan({"CPU": 8, "GPU": 2}, "cpu", None) == EncoderPlan("cpu", 4, 0, 1, 2, 1)
    assert encoder_plan({"CPU": 2}, "auto", None) == EncoderPlan("cpu", 1, 0, 1, 2, 1)
    assert encoder_plan({"CPU": 3}, "auto", None) == EncoderPlan("cpu", 1, 0, 1, 3, 1)  # a lone actor takes them all
    assert encoder_plan({}, "auto", None) == EncoderPlan("cpu", 1, 0, 1, 1, 1)  # resources not reported yet
