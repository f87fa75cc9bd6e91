"""Time the narrow full-resolution head convs of vgg16 at 512^2, B=32 (last merge 64 -> 3
and refine 3 -> 3, + gray) under cuDNN with the final width padded to 8, 16 or 32."""
import torch

from tail_sweep import timed as t                       # scripts/ is on the path when run as a script


torch.backends.cudnn.benchmark = True
B, H, W = 32, 512, 512
cl = torch.channels_last
x64 = torch.randn(B, 64, H, W, device="cuda").half().contiguous(memory_format=cl)
L = torch.rand(B, 1, H, W, device="cuda") * 100
for pad in (8, 16, 32):
    w1 = (torch.randn(pad, 64, 3, 3, device="cuda") * 0.05).half().contiguous(memory_format=cl)
    w2 = (torch.randn(pad, pad, 3, 3, device="cuda") * 0.05).half().contiguous(memory_format=cl)
    b1, b2 = torch.zeros(pad, device="cuda").half(), torch.zeros(pad, device="cuda").half()
    y = torch.cudnn_convolution_relu(x64, w1, b1, (1, 1), (1, 1), (1, 1), 1)
    g = (L / 100).half()
    a = t(lambda: torch.cudnn_convolution_relu(x64, w1, b1, (1, 1), (1, 1), (1, 1), 1))
    c = t(lambda: torch.cudnn_convolution_relu(y + g, w2, b2, (1, 1), (1, 1), (1, 1), 1))
    print(f"cuDNN pad {pad:2d}: merge 64->{pad} {a:.3f} ms, add+refine {pad}->{pad} {c:.3f} ms, total {a + c:.3f}", flush=True)
