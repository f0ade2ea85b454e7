"""Where a teacher training step spends its time on a GPU: data loader alone, step alone, and a
torch.profiler table (CPU and CUDA). Run from the repository root: python3 scripts/prof_teacher.py.
On the H100 it showed a batch-256 step of the shipped teacher's size is bound by the host (170 ms
of CPU for kernel launches against 44 ms of GPU work), hence batch 1024 in ship_teacher.sh."""
import time

import torch
import torch.nn.functional as F

from aria_train.diffusion.targets import prediction_target
from aria_train.teacher.config import TeacherConfig
from aria_train.diffusion.sampling import to_model_space
from aria_train.teacher.train import WorldBatches, build_teacher
from aria_train.worlds import World, WorldConfig

dev = "cuda"
cfg = TeacherConfig(world="aria_train/assets/world.json", channels=[32,64,64], norm_groups=16)
world = World(WorldConfig.load(cfg.world))
unet, tok, enc, sched = build_teacher(cfg, world)
unet.to(dev); enc.to(dev)
loader = torch.utils.data.DataLoader(WorldBatches(world, tok, 256, 0, 0), batch_size=None, num_workers=6, pin_memory=True, prefetch_factor=4, persistent_workers=True)
it = iter(loader); next(it)
s=time.time()
for i in range(100): ids, im = next(it)
print("loader alone: %.1f ms/batch" % ((time.time()-s)*10))
ids, im = ids.to(dev), im.to(dev)
opt = torch.optim.AdamW(list(unet.parameters())+list(enc.parameters()), lr=1e-4, fused=True)
def step(full):
    x0 = to_model_space(im)
    with torch.autocast("cuda", torch.bfloat16):
        h = enc(input_ids=ids).last_hidden_state
        noise = torch.randn_like(x0); t = torch.randint(0, 1000, (256,), device=dev)
        pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=h).sample
    loss = F.mse_loss(pred.float(), prediction_target("v_prediction", sched.alphas_cumprod, x0, noise, t))
    loss.backward()
    if full: torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
for full in (False, True):
    for i in range(5): step(full)
    torch.cuda.synchronize(); s=time.time()
    for i in range(30): step(full)
    torch.cuda.synchronize(); print("step (clip=%s): %.1f ms" % (full, (time.time()-s)/30*1000))
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    for i in range(5): step(True)
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cuda_time_total", row_limit=15))
print(p.key_averages().table(sort_by="cpu_time_total", row_limit=12))
