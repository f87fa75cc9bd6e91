"""The temporal stabilizer: warp, histogram cut test, flow confidence, blending."""
import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")

from tint.stabilize import (ChromaStabilizer, MotionEstimator, histogram_distance,  # noqa: E402
                            lightness_u8, remap, warp)


def texture(h=48, w=64, seed=0):
    """Smooth random texture in [0, 100] (lightness units), trackable by optical flow."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    return (x - x.min()) / (x.max() - x.min()) * 80 + 10


class TestWarp:
    def test_zero_flow_is_identity(self):
        x = torch.rand(2, 2, 9, 13)
        torch.testing.assert_close(warp(x, torch.zeros(2, 9, 13, 2)), x)

    def test_integer_shift(self):
        x = torch.rand(1, 2, 10, 12)
        flow = torch.zeros(1, 10, 12, 2)
        flow[..., 0] = 2                                     # out(p) = x(p + 2 px right)
        torch.testing.assert_close(warp(x, flow)[..., :-2], x[..., 2:])

    def test_matches_host_remap(self):
        rng = np.random.default_rng(1)
        img = rng.random((11, 17)).astype(np.float32)
        flow = (rng.random((11, 17, 2)).astype(np.float32) - 0.5) * 4
        ours = warp(torch.from_numpy(img)[None, None], torch.from_numpy(flow)[None])[0, 0].numpy()
        np.testing.assert_allclose(ours, remap(img, flow), atol=1e-4)


def test_histogram_distance():
    a = np.zeros((8, 8), np.uint8)
    assert histogram_distance(a, a) == 0
    assert histogram_distance(a, a + 255) == 1
    assert 0 < histogram_distance(a, np.arange(64, dtype=np.uint8).reshape(8, 8) * 4) < 1


def test_motion_finds_a_shift_and_cuts():
    L = texture()
    est = MotionEstimator()
    assert est(lightness_u8(L)).flow is None                           # first frame
    m = est(lightness_u8(np.roll(L, 2, axis=1)))                       # content moved 2 px right
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(m.flow[inner][..., 0]) == pytest.approx(-2, abs=0.3)
    assert np.median(m.confidence[inner]) > 0.5
    assert est(lightness_u8(L * 0.2 + 75)).confidence is None and est.cuts == 1   # a new shot


class TestChromaStabilizer:
    def frames(self, n=12, noise=8.0, seed=0):
        """A static shot: fixed lightness, chroma = a fixed field + per-frame noise (flicker)."""
        rng = np.random.default_rng(seed)
        L = torch.from_numpy(texture())[None, None].repeat(n, 1, 1, 1)
        base = torch.from_numpy(rng.normal(0, 20, (1, 2, 48, 64)).astype(np.float32))
        ab = base + torch.from_numpy(rng.normal(0, noise, (n, 2, 48, 64)).astype(np.float32))
        return L, ab

    def test_static_shot_flickers_less(self):
        L, ab = self.frames()
        out = ChromaStabilizer(strength=0.85)(ab, L)
        assert out.shape == ab.shape
        torch.testing.assert_close(out[0], ab[0])                        # nothing to blend with yet
        before = (ab[1:] - ab[:-1]).abs().mean()
        after = (out[1:] - out[:-1]).abs().mean()
        assert after < 0.5 * before

    def test_batches_chain_like_one_call(self):
        L, ab = self.frames()
        one = ChromaStabilizer()(ab, L)
        s = ChromaStabilizer()
        two = torch.cat([s(ab[:5], L[:5]), s(ab[5:], L[5:])])
        torch.testing.assert_close(one, two)

    def test_strength_zero_and_cuts_pass_through(self):
        L, ab = self.frames(4)
        torch.testing.assert_close(ChromaStabilizer(strength=0.0)(ab, L), ab)
        L2 = L.clone()
        L2[2:] = L2[2:] * 0.2 + 75                                         # a cut before frame 2
        s = ChromaStabilizer()
        out = s(ab, L2)
        torch.testing.assert_close(out[2], ab[2])
        assert s.cuts == 1
        with pytest.raises(ValueError):
            ChromaStabilizer(strength=1.0)
        with pytest.raises(ValueError):
            s.apply(ab, [])
