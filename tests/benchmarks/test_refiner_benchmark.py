"""The refiner benchmark's judging: image PSNR pools a photo's crops, and crops are grouped by their photo."""

import numpy as np
import pytest

from benchmarks.bench_refiner import image_psnr, paired, photo_crops, source_image


def test_image_psnr_pools_squared_error_per_image_then_averages_images():
    # photo a: one near-perfect flat crop (MSE 0.01, 68 dB) and one textured crop (MSE 100, 28 dB)
    sq_err, groups = np.array([0.01, 100.0, 25.0]), np.array(["a", "a", "b"])
    a = 10 * np.log10(255 ** 2 / 50.005)
    b = 10 * np.log10(255 ** 2 / 25.0)
    assert image_psnr(sq_err, groups) == pytest.approx((a + b) / 2)
    # the crop mean would count the flat crop's 68 dB as much as the textured crop's 28 dB
    assert image_psnr(sq_err, groups) < np.mean(10 * np.log10(255 ** 2 / sq_err)) - 5


def test_paired_gain_is_method_minus_baseline_with_an_interval_around_it():
    rng = np.random.default_rng(0)
    groups = np.repeat(["a", "b", "c"], 20)
    base = {"psnr": rng.normal(28, 2, 60), "ssim": rng.random(60), "sq_err": rng.uniform(20, 80, 60)}
    better = {"psnr": base["psnr"] + 0.5, "ssim": base["ssim"] + 0.01, "sq_err": base["sq_err"] / 2}
    out = paired(better, base, groups)
    assert out["psnr_gain_mean_db"] == 0.5 and out["psnr_better_share"] == 1.0
    assert abs(out["psnr_image_gain_db"] - 10 * np.log10(2)) < 1e-3  # half the error everywhere: +3.01 dB
    lo, hi = out["psnr_image_gain_ci95"]
    assert lo <= out["psnr_image_gain_db"] <= hi and out["images"] == 3 and out["n"] == 60
    assert [q["gain_db"] for q in out["psnr_gain_by_baseline_quarter"]] == [0.5] * 4


def test_held_out_crops_group_by_photo_and_scale_and_toy_images_by_themselves():
    china = {"uri": "sklearn:china.jpg@0.5#xywh=10,20,32,32", "source": "sklearn:china.jpg"}
    assert source_image(china) == "sklearn:china.jpg@0.5"
    assert source_image({"uri": "chelsea@1.0#xywh=0,0,32,32", "source": "chelsea"}) == "chelsea@1.0"
    crops = photo_crops(["coffee"], 32, 4, "held")  # the URIs photo_crops writes group the same way
    assert [source_image(m) for _, m in crops] == ["coffee@1.0"] * 2 + ["coffee@0.5"] * 2
    assert source_image({"uri": "toy://99/5", "source": "toy_shapes"}) == "toy://99/5"
