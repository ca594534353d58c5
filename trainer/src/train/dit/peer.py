# The peer of `kelp bench dit-step`: kelp's hybrid-stream DiT written the way a PyTorch user
# writes it (nn.Linear, F.scaled_dot_product_attention, autocast, AdamW), trained for the same
# steps on batches of the same shape. Reads one JSON argument file, prints one JSON line.
#
# The architecture follows trainer/src/models/dit: patch and text embeddings, a sinusoidal
# timestep MLP (plus size / fps micro-conditions when enabled), dual-stream blocks then
# single-stream blocks with a shared SwiGLU part, AdaLN-Zero modulation, QK RMSNorm, MM-RoPE over
# (t, h, w) for video tokens and 1D positions after the grid for text, an AdaLN output layer.
# The parameter count must equal kelp's (`kelp bench dit-step` refuses to compare otherwise).
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoid(t, features):
    half = features // 2
    k = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(10000.0) * k / half)
    angles = (t.float() * 1000.0)[..., None] * freqs
    parts = [angles.cos(), angles.sin()]
    if features % 2 == 1:
        parts.append(torch.zeros_like(angles[..., :1]))
    return torch.cat(parts, -1)


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def modulate(x, shift, scale):
    return x * (scale + 1.0) + shift


def zero_linear(i, o):
    lin = nn.Linear(i, o)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class RmsNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        rms = (x.float().pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
        return (x.float() / rms * self.scale).to(x.dtype)


class SwiGlu(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.gate = nn.Linear(dim, hidden)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class StreamAttn(nn.Module):
    def __init__(self, d, head_dim):
        super().__init__()
        self.ada = zero_linear(d, 6 * d)
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = RmsNorm(head_dim)
        self.k_norm = RmsNorm(head_dim)
        self.proj = nn.Linear(d, d)


def rope_apply(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Block(nn.Module):
    def __init__(self, c, dual):
        super().__init__()
        d, hd = c["hidden"], c["hidden"] // c["heads"]
        self.heads = c["heads"]
        self.video = StreamAttn(d, hd)
        self.text = StreamAttn(d, hd) if dual else None
        h = ffn_hidden(c)
        if dual:
            shared, own = 0, h
        else:
            shared = min(round(h * c["ffn_shared"]), h)
            own = h - shared
        self.ffn_shared = SwiGlu(d, shared) if shared > 0 else None
        self.ffn_video = SwiGlu(d, own) if own > 0 else None
        self.ffn_text = SwiGlu(d, own) if own > 0 else None

    def ffn(self, own, x):
        out = 0
        if self.ffn_shared is not None:
            out = out + self.ffn_shared(x)
        if own is not None:
            out = out + own(x)
        return out

    def forward(self, video, text, cond, cos, sin):
        tw = self.text if self.text is not None else self.video
        mv = self.video.ada(cond).chunk(6, -1)
        mt = tw.ada(cond).chunk(6, -1)
        b, nv, d = video.shape
        h = self.heads

        def qkv(w, x, m):
            hx = modulate(layer_norm(x), m[0], m[1])
            q, k, v = w.qkv(hx).chunk(3, -1)
            split = lambda t: t.reshape(b, x.shape[1], h, d // h).transpose(1, 2)
            return w.q_norm(split(q)), w.k_norm(split(k)), split(v)

        qv, kv, vv = qkv(self.video, video, mv)
        qt, kt, vt = qkv(tw, text, mt)
        q = rope_apply(torch.cat([qv, qt], 2), cos, sin)
        k = rope_apply(torch.cat([kv, kt], 2), cos, sin)
        v = torch.cat([vv, vt], 2)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)
        video = video + mv[2] * self.video.proj(o[:, :nv])
        text = text + mt[2] * tw.proj(o[:, nv:])
        fv = self.ffn(self.ffn_video, modulate(layer_norm(video), mv[3], mv[4]))
        ft = self.ffn(self.ffn_text, modulate(layer_norm(text), mt[3], mt[4]))
        return video + mv[5] * fv, text + mt[5] * ft


def ffn_hidden(c):
    return max(round(c["hidden"] * c["mlp_ratio"]), 1)


class MicroEmbed(nn.Module):
    def __init__(self, axes, features, d):
        super().__init__()
        self.features = features
        self.fc1 = nn.Linear(axes * features, d)
        self.fc2 = zero_linear(d, d)

    def forward(self, values):
        parts = [sinusoid(values[..., k] / 1000.0, self.features) for k in range(values.shape[-1])]
        return self.fc2(F.silu(self.fc1(torch.cat(parts, -1))))


class Dit(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden"]
        pt, ph, pw = c["patch"]
        cin = 2 * c["latent_channels"] + 1 if c.get("image_condition") else c["latent_channels"]
        self.c = c
        self.patch_in = nn.Linear(cin * pt * ph * pw, d)
        self.text_in = nn.Linear(c["text_dim"], d)
        self.null_text = nn.Parameter(torch.zeros(c["text_dim"]))
        self.time_fc1 = nn.Linear(c["time_features"], d)
        self.time_fc2 = nn.Linear(d, d)
        self.size = MicroEmbed(3, c["time_features"], d) if c.get("size_condition") else None
        self.fps = MicroEmbed(1, c["time_features"], d) if c.get("fps_condition") else None
        self.blocks = nn.ModuleList(
            [Block(c, i < c["dual_layers"]) for i in range(c["depth"])]
        )
        self.final_ada = zero_linear(d, 2 * d)
        self.final_out = zero_linear(d, c["latent_channels"] * pt * ph * pw)

    def rope(self, grid, text_len, device):
        nt, nh, nw = grid
        t, h, w = torch.meshgrid(
            torch.arange(nt), torch.arange(nh), torch.arange(nw), indexing="ij"
        )
        video = torch.stack([t.flatten(), h.flatten(), w.flatten()], -1).float()
        text = (max(grid) + torch.arange(text_len)).float()[:, None].expand(text_len, 3)
        pos = torch.cat([video, text], 0).double()
        freqs = []
        for axis, dim in enumerate(self.c["rope_axes"]):
            for k in range(dim // 2):
                freqs.append((axis, self.c["rope_theta"] ** (-2.0 * k / dim)))
        angles = torch.stack([pos[:, a] * f for a, f in freqs], -1)
        angles = torch.cat([angles, angles], -1)
        return angles.cos().float().to(device), angles.sin().float().to(device)

    def forward(self, x, t, text, fps):
        b, ch, T, H, W = x.shape
        pt, ph, pw = self.c["patch"]
        grid = (T // pt, H // ph, W // pw)
        tokens = (
            x.reshape(b, ch, grid[0], pt, grid[1], ph, grid[2], pw)
            .permute(0, 2, 4, 6, 1, 3, 5, 7)
            .reshape(b, -1, ch * pt * ph * pw)
        )
        cos, sin = self.rope(grid, text.shape[1], x.device)
        cond = self.time_fc2(F.silu(self.time_fc1(sinusoid(t[:, None], self.c["time_features"]))))
        if self.size is not None:
            sizes = torch.tensor(grid, dtype=torch.float32, device=x.device).expand(b, 1, 3)
            cond = cond + self.size(sizes)
        if self.fps is not None:
            cond = cond + self.fps(fps[:, None, None])
        cond = F.silu(cond)
        video, txt = self.patch_in(tokens), self.text_in(text)
        for block in self.blocks:
            video, txt = block(video, txt, cond, cos, sin)
        shift, scale = self.final_ada(cond).chunk(2, -1)
        return self.final_out(modulate(layer_norm(video), shift, scale))


def main():
    args = json.load(open(sys.argv[1]))
    c = args["model"]
    device = torch.device(args["device"])
    torch.manual_seed(0)
    model = Dit(c).to(device)
    params = sum(p.numel() for p in model.parameters())
    b, ch, T, H, W = args["latent"]
    L = args["text_len"]
    g = torch.Generator(device="cpu").manual_seed(1)
    x0 = torch.randn(b, ch, T, H, W, generator=g).to(device)
    text = torch.randn(b, L, c["text_dim"], generator=g).to(device)
    fps = torch.full((b,), 24.0, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    half = args["precision"] == "bf16" and device.type == "cuda"
    pt, ph, pw = c["patch"]

    def step():
        t = torch.sigmoid(torch.randn(b, device=device))
        eps = torch.randn_like(x0)
        xt = x0 * (1 - t)[:, None, None, None, None] + eps * t[:, None, None, None, None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=half):
            v = model(xt, t, text, fps)
        target = (eps - x0).reshape(b, ch, T // pt, pt, H // ph, ph, W // pw, pw)
        target = target.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(v.shape)
        loss = F.mse_loss(v.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args["steps"]):
        loss = step()
    seconds = (time.perf_counter() - start) / args["steps"]
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated()
        name = torch.cuda.get_device_name()
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        name = "cpu"
    print(json.dumps({
        "params": params, "step_s": seconds, "loss": loss, "memory_bytes": memory,
        "device": f"PyTorch {torch.__version__} on {name}",
    }))


if __name__ == "__main__":
    main()
