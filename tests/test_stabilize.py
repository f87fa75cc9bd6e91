"""The temporal stabilizer: warp, optical flow, histogram cut test, confidence, blending."""
import numpy as np
import pytest
import torch

from tint.stabilize import ChromaStabilizer, flow, flow_confidence, histogram_distance, warp

cv2 = pytest.importorskip("cv2")


def texture(h=48, w=64, seed=0):
    """Smooth random texture in [0, 100] (lightness units), trackable by optical flow."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    return (x - x.min()) / (x.max() - x.min()) * 80 + 10


def grey(L):
    return torch.from_numpy(np.ascontiguousarray(L))[None, None] * 2.55


class TestWarp:
    def test_zero_flow_is_identity(self):
        x = torch.rand(2, 2, 9, 13)
        torch.testing.assert_close(warp(x, torch.zeros(2, 9, 13, 2)), x)

    def test_integer_shift(self):
        x = torch.rand(1, 2, 10, 12)
        f = torch.zeros(1, 10, 12, 2)
        f[..., 0] = 2                                        # out(p) = x(p + 2 px right)
        torch.testing.assert_close(warp(x, f)[..., :-2], x[..., 2:])

    def test_matches_opencv_remap(self):
        rng = np.random.default_rng(1)
        img = rng.random((11, 17)).astype(np.float32)
        f = (rng.random((11, 17, 2)).astype(np.float32) - 0.5) * 4
        gx, gy = np.meshgrid(np.arange(17, dtype=np.float32), np.arange(11, dtype=np.float32))
        ref = cv2.remap(img, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ours = warp(torch.from_numpy(img)[None, None], torch.from_numpy(f)[None])[0, 0].numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-4)


class TestFlow:
    inner = (slice(10, -10), slice(10, -10))

    @pytest.mark.parametrize("dx,dy", [(2.0, 0.0), (-1.5, 0.7), (6.0, -4.0)])
    def test_finds_a_known_motion(self, dx, dy):
        L = texture(64, 96, seed=3)
        prev = grey(L)
        f = torch.zeros(1, 64, 96, 2)
        f[..., 0], f[..., 1] = -dx, -dy
        cur = warp(prev, f)                                   # content moved by (dx, dy)
        got = flow(cur, prev)[0][self.inner]
        assert got.shape[-1] == 2
        assert got[..., 0].median().item() == pytest.approx(-dx, abs=0.15)
        assert got[..., 1].median().item() == pytest.approx(-dy, abs=0.15)

    def test_batched_pairs_are_independent(self):
        a, b = grey(texture(seed=1)), grey(np.roll(texture(seed=1), 2, axis=1))
        both = flow(torch.cat((b, a)), torch.cat((a, b)))
        torch.testing.assert_close(both[:1], flow(b, a), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(both[1:], flow(a, b), atol=1e-4, rtol=1e-4)

    def test_confidence_high_on_true_motion_low_on_mismatch(self):
        L = texture(64, 96, seed=2)
        prev, cur = grey(L), grey(np.roll(L, 2, axis=1))
        back, fwd = flow(cur, prev), flow(prev, cur)
        conf = flow_confidence(back, fwd, cur, prev)
        assert conf.shape == (1, 1, 64, 96) and 0 <= conf.min() and conf.max() <= 1
        assert conf[0, 0][self.inner].median() > 0.8
        other = grey(texture(64, 96, seed=7))                   # an unrelated picture
        bad = flow_confidence(flow(other, prev), flow(prev, other), other, prev)
        assert bad[0, 0][self.inner].median() < 0.3

    def test_bad_shapes(self):
        with pytest.raises(ValueError):
            flow(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


def test_histogram_distance():
    a = torch.zeros(1, 1, 8, 8)
    assert histogram_distance(a, a).item() == 0
    assert histogram_distance(a, a + 255).item() == 1
    ramp = (torch.arange(64.0) * 4).view(1, 1, 8, 8)
    assert 0 < histogram_distance(a, ramp).item() < 1
    assert histogram_distance(torch.cat((a, a)), torch.cat((a, a + 255))).tolist() == [0, 1]


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

    def test_moving_shot_follows_the_motion(self):
        # the chroma moves with the content: stabilized output stays aligned with it
        L = texture(48, 96, seed=4)
        rng = np.random.default_rng(0)
        base = np.stack([cv2.GaussianBlur(rng.normal(0, 60, (48, 96)).astype(np.float32), (0, 0), 3.0)
                         for _ in range(2)])                           # smooth chroma, like a network's
        Ls = torch.stack([torch.from_numpy(np.roll(L, t, axis=1))[None] for t in range(8)])
        clean = torch.stack([torch.from_numpy(np.roll(base, t, axis=2)) for t in range(8)])
        noisy = clean + torch.from_numpy(rng.normal(0, 8, clean.shape).astype(np.float32))
        out = ChromaStabilizer()(noisy, Ls)
        inner = (slice(None), slice(None), slice(8, -8), slice(12, -12))
        assert (out - clean)[inner][1:].abs().mean() < 0.7 * (noisy - clean)[inner][1:].abs().mean()

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
            s(ab, L[:2])

    def test_new_size_starts_over(self):
        L, ab = self.frames(3)
        s = ChromaStabilizer()
        s(ab, L)
        small_L, small_ab = L[:, :, :24, :32], ab[:, :, :24, :32]
        torch.testing.assert_close(s(small_ab, small_L)[0], small_ab[0])
