#!/usr/bin/env python3
"""Side by side: the official BlendGAN scripts against ``python -m blendgan``, as whole processes.

Every job is a separate subprocess started with the same interpreter and the same environment
(OMP/MKL threads, PYTHONPATH = this repo, fresh torch.compile caches). For each run: wall-clock
time, the child's peak RSS (os.wait4 rusage), CPU user/sys time and, on CUDA, the peak GPU
memory in use (nvidia-smi polling, minus the value before the start). One JSON line per run
goes to --out; a summary (total s, s/pair, marginal s/pair = ΔT/ΔN between the two sizes of a
job, which cancels start-up and model loading) goes to <out>.summary.jsonl and stdout.

--official DIR is a checkout of the official release (github.com/onion-liu/BlendGAN) prepared
to run without its CUDA extensions. Nothing of it is part of this repository; the changes, all
small, are:
  * op/fused_act.py, op/upfirdn2d.py: drop the JIT ``load(...)`` of the upstream CUDA sources;
    keep the official CPU code paths; route CUDA tensors to ``blendgan.ops.fused_bias_act(x, b,
    "lrelu", slope, scale, dim=1)`` and ``blendgan.ops.upfirdn2d(x, k, (up, up), (down, down),
    (p0, p1, p0, p1))`` (so on a GPU the official scripts run on our kernels);
  * generate_image_pairs.py, style_transfer_folder.py: ``device`` read from the environment
    variable OFFICIAL_DEVICE (set by this script) instead of the hard-coded 'cuda';
    generate_image_pairs.py: ``torch.load(ckpt, map_location=device)`` (the released
    checkpoint was saved from a GPU; test checkpoints are CPU-saved);
  * psp_encoder/psp_encoders.py: ``latent_avg.cuda()`` -> ``.to(the input's device)``.
Check the prepared checkout against ../shared/golden before timing it.

Jobs (--which, comma separated; default all):
  off_pairs      official generate_image_pairs.py, --pics N for N in --pairs-n (default 8,24)
  ours_pairs     python -m blendgan pairs, same N, --batch-size, variants (--variants)
  off_transfer   official style_transfer_folder.py over F faces x S styles, F in --faces (4,8), S=4
  ours_transfer  python -m blendgan transfer on the same folders, variants
  agree          fp32 agreement of written images: transfer (1 face x 1 style) and pairs
                 (same face codes via --sample_zs and the same --style_img), official vs ours
Variants of ours (--variants): fp32, fp32c (fp32 --compile), tf32, bf16, bf16c, fp16, fp16c.

    python tools/benchmark_vs_official.py --official ../BlendGAN --ckpt-dir CK --size 256 --repeat 2
    python tools/benchmark_vs_official.py --official ../BlendGAN --ckpt-dir CK --size 1024 --device cuda \
        --which off_pairs,ours_pairs --variants fp16,tf32 --pairs-n 16,400 --batch-size 8
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this repository
PY = sys.executable

VARIANTS = {
    'fp32': [],
    'fp32c': ['--compile'],
    'bf16c': ['--precision', 'bf16', '--compile'],
    'tf32': ['--precision', 'tf32'],
    'bf16': ['--precision', 'bf16'],
    'fp16': ['--precision', 'fp16'],
    'fp16c': ['--precision', 'fp16', '--compile'],
}
GROUPS = ('off_pairs', 'ours_pairs', 'off_transfer', 'ours_transfer', 'agree')


# ---------------------------------------------------------------------------------------------
def base_env(args, run_dir):
    env = dict(os.environ)
    t = str(args.threads)
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t)
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env['OFFICIAL_DEVICE'] = args.device           # read by the patched official scripts
    env['PYTHONUNBUFFERED'] = '1'
    if args.compile_cache == 'cold':               # no compile cache shared between runs
        env['TORCHINDUCTOR_CACHE_DIR'] = os.path.join(run_dir, 'inductor_cache')
        env['TRITON_CACHE_DIR'] = os.path.join(run_dir, 'triton_cache')
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''           # both sides really on CPU
    return env


class GpuPoll(threading.Thread):
    """Peak of nvidia-smi memory.used (MiB) on GPU 0 while a child runs."""

    def __init__(self, interval=0.2):
        super().__init__(daemon=True)
        self.interval, self.peak, self.stop_flag = interval, None, threading.Event()

    @staticmethod
    def used():
        try:
            out = subprocess.run(['nvidia-smi', '--query-gpu=memory.used', '--format=csv,noheader,nounits',
                                  '-i', '0'], capture_output=True, text=True, timeout=5).stdout
            return float(out.strip().splitlines()[0])
        except Exception:
            return None

    def run(self):
        while not self.stop_flag.is_set():
            u = self.used()
            if u is not None:
                self.peak = u if self.peak is None else max(self.peak, u)
            self.stop_flag.wait(self.interval)


def run_child(cmd, env, cwd, log_path, device, timeout=None):
    """Run cmd; return wall seconds, rc and the child's rusage."""
    gpu0 = GpuPoll.used() if device == 'cuda' else None
    poll = GpuPoll() if device == 'cuda' else None
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        if poll:
            poll.start()
        timer = None
        if timeout:
            timer = threading.Timer(timeout, p.kill)
            timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
    if poll:
        poll.stop_flag.set()
        poll.join()
    gpu = None
    if poll and poll.peak is not None and gpu0 is not None:
        gpu = poll.peak - gpu0
    return dict(wall_s=round(wall, 3), rc=p.returncode, peak_rss_mib=round(ru.ru_maxrss / 1024, 1),
                user_s=round(ru.ru_utime, 2), sys_s=round(ru.ru_stime, 2),
                gpu_mem_peak_mib=gpu)


def count_files(d):
    return len([f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f))]) if os.path.isdir(d) else 0


# ---------------------------------------------------------------------------------------------
def prepare_inputs(work, max_faces, n_styles):
    """faces_F/ (F faces, cycling test_imgs/face_imgs under new names) and styles/."""
    src_f = os.path.join(REPO, 'test_imgs', 'face_imgs')
    src_s = os.path.join(REPO, 'test_imgs', 'style_imgs')
    faces = sorted(f for f in os.listdir(src_f) if not f.startswith('.'))
    styles = sorted(f for f in os.listdir(src_s) if not f.startswith('.'))
    inp = os.path.join(work, 'inputs')
    if os.path.isdir(inp):
        shutil.rmtree(inp)
    sdir = os.path.join(inp, 'styles')
    os.makedirs(sdir)
    for i in range(n_styles):
        f = styles[i % len(styles)]
        name = f if i < len(styles) else f's{i}_{f}'
        shutil.copy(os.path.join(src_s, f), os.path.join(sdir, name))
    face_names = []
    for i in range(max_faces):
        f = faces[i % len(faces)]
        face_names.append((f, f'face{i:02d}_{f}'))
    return inp, sdir, face_names, faces, styles


def face_dir(inp, face_names, n):
    d = os.path.join(inp, f'faces_{n}')
    if not os.path.isdir(d):
        os.makedirs(d)
        for src, name in face_names[:n]:
            shutil.copy(os.path.join(REPO, 'test_imgs', 'face_imgs', src), os.path.join(d, name))
    return d


def img_diff(a, b):
    import cv2
    import numpy as np
    x, y = cv2.imread(a), cv2.imread(b)
    if x is None or y is None or x.shape != y.shape:
        return dict(file=os.path.basename(a), error='missing or shape mismatch',
                    shape_a=None if x is None else x.shape, shape_b=None if y is None else y.shape)
    d = np.abs(x.astype(np.int16) - y.astype(np.int16))
    w = x.shape[1]
    return dict(file=os.path.basename(a), shape=list(x.shape), max_abs=int(d.max()), mean_abs=float(d.mean()),
                frac_ne=float((d > 0).mean()))


def compare_dirs(da, db, panels):
    """Per-file diff; also over the last panel only (the generated image)."""
    import cv2
    import numpy as np
    res = []
    for f in sorted(os.listdir(da)):
        pa, pb = os.path.join(da, f), os.path.join(db, f)
        if not os.path.exists(pb):
            res.append(dict(file=f, error='missing in ours'))
            continue
        r = img_diff(pa, pb)
        if 'error' not in r:
            x, y = cv2.imread(pa).astype(np.int16), cv2.imread(pb).astype(np.int16)
            w = x.shape[1] // panels
            r['max_abs_output_panel'] = int(np.abs(x[:, -w:] - y[:, -w:]).max())
        res.append(r)
    return res


# ---------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--official', required=True, help='the prepared official checkout (see above)')
    ap.add_argument('--ckpt-dir', required=True, help='folder with blendgan.pt and psp_encoder.pt')
    ap.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    ap.add_argument('--size', type=int, required=True)
    ap.add_argument('--out', default='results.jsonl')
    ap.add_argument('--which', default='all', help=f"comma list of {','.join(GROUPS)} or 'all'")
    ap.add_argument('--variants', default='fp32,bf16c,fp32c', help=f"ours: comma list of {','.join(VARIANTS)}")
    ap.add_argument('--pairs-n', default='8,24', help='pair counts for the pairs jobs')
    ap.add_argument('--faces', default='4,8', help='face counts for the transfer jobs')
    ap.add_argument('--styles', type=int, default=4)
    ap.add_argument('--batch-size', type=int, default=4, help='ours --batch-size')
    ap.add_argument('--threads', type=int, default=None,
                    help='OMP/MKL threads for every child (default: os.cpu_count())')
    ap.add_argument('--repeat', type=int, default=1, help='runs of each job')
    ap.add_argument('--workdir', default=None, help='scratch folder (default <out>.work)')
    ap.add_argument('--compile-cache', choices=('cold', 'warm'), default='cold',
                    help='cold: fresh TORCHINDUCTOR/TRITON cache dir per run (default)')
    ap.add_argument('--timeout', type=float, default=None, help='kill a child after this many seconds')
    ap.add_argument('--keep-outputs', action='store_true', help='keep written images of timed runs')
    args = ap.parse_args()
    official = os.path.abspath(args.official)  # the prepared official checkout
    for script in ('generate_image_pairs.py', 'style_transfer_folder.py', 'model.py'):
        if not os.path.isfile(os.path.join(official, script)):
            ap.error(f'{official}: no {script}; --official must be a checkout of the official release')
    if args.threads is None:
        args.threads = os.cpu_count()
    which = set(GROUPS) if args.which == 'all' else set(args.which.split(','))
    bad = which - set(GROUPS)
    if bad:
        ap.error(f'unknown --which {bad}')
    variants = [v for v in args.variants.split(',') if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f'unknown variant {v}')
    pairs_n = [int(x) for x in args.pairs_n.split(',') if x]
    faces_n = [int(x) for x in args.faces.split(',') if x]
    ckpt = os.path.join(os.path.abspath(args.ckpt_dir), 'blendgan.pt')
    psp = os.path.join(os.path.abspath(args.ckpt_dir), 'psp_encoder.pt')
    out = os.path.abspath(args.out)
    work = os.path.abspath(args.workdir or out + '.work')
    os.makedirs(work, exist_ok=True)
    inp, sdir, face_names, _, _ = prepare_inputs(work, max(faces_n + [1]), args.styles)

    # environment facts, from a child so that the driver never initialises CUDA
    info = subprocess.run([PY, '-c', (
        'import json, platform, torch, torchvision, cv2; '
        'd = dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__, '
        'cv2=cv2.__version__, cuda=torch.cuda.is_available()); '
        'd["gpu"] = torch.cuda.get_device_name(0) if d["cuda"] else None; print(json.dumps(d))')],
        capture_output=True, text=True, env=base_env(args, work)).stdout.strip().splitlines()[-1]
    info = json.loads(info)
    try:
        cpu = [l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')][0]
    except Exception:
        cpu = None
    info.update(cpu=cpu, cpu_count=os.cpu_count(), threads=args.threads, device=args.device, size=args.size,
                batch_size=args.batch_size, compile_cache=args.compile_cache,
                date=datetime.datetime.now().isoformat(timespec='seconds'))
    print('env:', json.dumps(info))

    # CUDA: build (or load from the cache) our CUDA ops once, before any timed run, so that
    # neither side pays the one-off JIT build
    if args.device == 'cuda':
        bi = subprocess.run([PY, '-c', 'from blendgan.ops import backend_info; print(backend_info(build_now=True))'],
                            capture_output=True, text=True, env=base_env(args, work))
        info['blendgan_ops'] = bi.stdout.strip()[-2000:]
        print('blendgan ops:', info['blendgan_ops'])

    # page-cache the checkpoints so that the first run does not pay the disk read alone
    for f in (ckpt, psp):
        with open(f, 'rb') as fh:
            while fh.read(1 << 24):
                pass

    jobs = []  # (name, impl, task, variant, n_pairs, n_faces, cmd, outdir, cwd)
    off = lambda script: [PY, os.path.join(official, script)]
    ours = lambda sub: [PY, '-m', 'blendgan', sub]
    dev = ['--device', args.device]
    if 'off_pairs' in which:
        for n in pairs_n:
            od = os.path.join(work, f'off_pairs_{n}')
            jobs.append((f'official_pairs_N{n}', 'official', 'pairs', 'fp32', n, None,
                         off('generate_image_pairs.py') + ['--size', str(args.size), '--pics', str(n),
                                                           '--ckpt', ckpt, '--outdir', od], od, official))
    if 'ours_pairs' in which:
        for v in variants:
            for n in pairs_n:
                od = os.path.join(work, f'ours_pairs_{v}_{n}')
                jobs.append((f'ours_pairs_{v}_N{n}', 'ours', 'pairs', v, n, None,
                             ours('pairs') + ['--ckpt', ckpt, '--size', str(args.size), '--pics', str(n),
                                              '--outdir', od, '--batch-size', str(args.batch_size)] + dev
                             + VARIANTS[v], od, work))
    if 'off_transfer' in which:
        for f in faces_n:
            fd = face_dir(inp, face_names, f)
            od = os.path.join(work, f'off_transfer_{f}x{args.styles}')
            jobs.append((f'official_transfer_{f}x{args.styles}', 'official', 'transfer', 'fp32', f * args.styles, f,
                         off('style_transfer_folder.py') + ['--size', str(args.size), '--ckpt', ckpt,
                                                            '--psp_encoder_ckpt', psp, '--input_img_path', fd,
                                                            '--style_img_path', sdir, '--outdir', od], od, official))
    if 'ours_transfer' in which:
        for v in variants:
            for f in faces_n:
                fd = face_dir(inp, face_names, f)
                od = os.path.join(work, f'ours_transfer_{v}_{f}x{args.styles}')
                jobs.append((f'ours_transfer_{v}_{f}x{args.styles}', 'ours', 'transfer', v, f * args.styles, f,
                             ours('transfer') + ['--ckpt', ckpt, '--psp-encoder', psp, '--size', str(args.size),
                                                 '--input', fd, '--style', sdir, '--outdir', od,
                                                 '--batch-size', str(args.batch_size)] + dev + VARIANTS[v], od, work))
    agree_dirs = {}
    if 'agree' in which:
        # transfer: 1 face x 1 style
        a_in = os.path.join(work, 'agree_inputs')
        if os.path.isdir(a_in):
            shutil.rmtree(a_in)
        a_f, a_s = os.path.join(a_in, 'face'), os.path.join(a_in, 'style')
        os.makedirs(a_f)
        os.makedirs(a_s)
        shutil.copy(os.path.join(REPO, 'test_imgs', 'face_imgs', face_names[0][0]), a_f)
        style0 = sorted(os.listdir(sdir))[0]
        shutil.copy(os.path.join(sdir, style0), a_s)
        for impl in ('official', 'ours'):
            od = os.path.join(work, f'agree_transfer_{impl}')
            agree_dirs[('transfer', impl)] = od
            cmd = (off('style_transfer_folder.py') + ['--size', str(args.size), '--ckpt', ckpt, '--psp_encoder_ckpt',
                                                      psp, '--input_img_path', a_f, '--style_img_path', a_s,
                                                      '--outdir', od]
                   if impl == 'official' else
                   ours('transfer') + ['--ckpt', ckpt, '--psp-encoder', psp, '--size', str(args.size), '--input', a_f,
                                       '--style', a_s, '--outdir', od, '--batch-size', str(args.batch_size)] + dev)
            jobs.append((f'agree_transfer_{impl}', impl, 'agree_transfer', 'fp32', 1, 1, cmd, od,
                         official if impl == 'official' else work))
        # pairs: the same 2 face codes ([P,1,512], on the run device as the official script needs)
        # and the same style image
        zs = os.path.join(a_in, 'sample_zs.pt')
        subprocess.run([PY, '-c', f'import torch; g = torch.Generator().manual_seed(123); '
                                  f'torch.save(torch.randn(2, 1, 512, generator=g).to("{args.device}"), {zs!r})'],
                       check=True, env=base_env(args, work))
        for impl in ('official', 'ours'):
            od = os.path.join(work, f'agree_pairs_{impl}')
            agree_dirs[('pairs', impl)] = od
            st = os.path.join(a_s, style0)
            cmd = (off('generate_image_pairs.py') + ['--size', str(args.size), '--pics', '2', '--ckpt', ckpt,
                                                     '--outdir', od, '--sample_zs', zs, '--style_img', st]
                   if impl == 'official' else
                   ours('pairs') + ['--ckpt', ckpt, '--size', str(args.size), '--pics', '2', '--outdir', od,
                                    '--sample-zs', zs, '--style-img', st, '--batch-size', str(args.batch_size)] + dev)
            jobs.append((f'agree_pairs_{impl}', impl, 'agree_pairs', 'fp32', 2, None, cmd, od,
                         official if impl == 'official' else work))

    os.makedirs(os.path.join(work, 'logs'), exist_ok=True)
    records = []
    # repetitions are the OUTER loop: every job runs once per round, so slow drifts of the machine
    # hit all jobs alike; the summary takes the median over rounds
    last_round = args.repeat - 1
    with open(out, 'a') as fo:
        for r in range(args.repeat):
            for name, impl, task, variant, n, nf, cmd, od, cwd in jobs:
                if os.path.isdir(od):
                    shutil.rmtree(od)
                run_dir = os.path.join(work, 'runs', f'{name}_r{r}')
                if os.path.isdir(run_dir):
                    shutil.rmtree(run_dir)
                os.makedirs(run_dir)
                env = base_env(args, run_dir)
                log_path = os.path.join(work, 'logs', f'{name}_r{r}.log')
                print(f'[{time.strftime("%H:%M:%S")}] {name} (rep {r}) ...', flush=True)
                res = run_child(cmd, env, cwd, log_path, args.device, args.timeout)
                rec = dict(name=name, impl=impl, task=task, variant=variant, n_pairs=n, n_faces=nf,
                           n_styles=args.styles if task == 'transfer' else None, rep=r, device=args.device,
                           size=args.size, threads=args.threads, **res, n_outputs=count_files(od),
                           s_per_pair=round(res['wall_s'] / n, 4), cmd=cmd, log=log_path,
                           torch=info['torch'], gpu=info['gpu'], cpu=info['cpu'])
                print('   ', json.dumps({k: rec[k] for k in ('wall_s', 'rc', 'peak_rss_mib', 'user_s', 'sys_s',
                                                             'gpu_mem_peak_mib', 'n_outputs', 's_per_pair')}),
                      flush=True)
                if rec['rc'] != 0 or rec['n_outputs'] != n:
                    print(f'    !! rc={rec["rc"]} outputs={rec["n_outputs"]}/{n}; see {log_path}', flush=True)
                fo.write(json.dumps(rec) + '\n')
                fo.flush()
                records.append(rec)
                shutil.rmtree(run_dir, ignore_errors=True)
                if not args.keep_outputs and r == last_round and task in ('pairs', 'transfer') and not (
                        task == 'transfer' and variant == 'fp32' and nf == min(faces_n)):
                    shutil.rmtree(od, ignore_errors=True)   # keep only the fp32 4-face transfer outputs

    # ---- agreement ----------------------------------------------------------------------------
    summary = []
    if ('transfer', 'official') in agree_dirs:
        for task, panels in (('transfer', 3), ('pairs', 2)):
            res = compare_dirs(agree_dirs[(task, 'official')], agree_dirs[(task, 'ours')], panels)
            summary.append(dict(record='agreement', task=task, what=f'{task} fp32 official vs ours (written jpg)',
                                files=res))
    f0 = min(faces_n) if faces_n else None
    d_off = os.path.join(work, f'off_transfer_{f0}x{args.styles}')
    d_our = os.path.join(work, f'ours_transfer_fp32_{f0}x{args.styles}')
    if f0 and os.path.isdir(d_off) and os.path.isdir(d_our):
        res = compare_dirs(d_off, d_our, 3)
        ok = [r for r in res if 'error' not in r]
        summary.append(dict(record='agreement', task='transfer',
                            what=f'all {f0}x{args.styles} transfer outputs, official vs ours fp32 (jpg)',
                            n_files=len(res), max_abs=max((r['max_abs'] for r in ok), default=None),
                            max_abs_output_panel=max((r['max_abs_output_panel'] for r in ok), default=None),
                            mean_abs=max((r['mean_abs'] for r in ok), default=None), errors=len(res) - len(ok)))

    # ---- timing summary (median over rounds) ---------------------------------------------------
    import statistics
    groups = {}
    for r in records:
        if r['task'] in ('pairs', 'transfer'):
            groups.setdefault((r['impl'], r['task'], r['variant'], r['n_pairs']), []).append(r)
    rows = []
    for (impl, task, variant, n), rs in sorted(groups.items()):
        rows.append(dict(impl=impl, task=task, variant=variant, n_pairs=n,
                         wall_s=round(statistics.median(x['wall_s'] for x in rs), 3), reps=len(rs),
                         wall_s_all=[x['wall_s'] for x in rs],
                         peak_rss_mib=max(x['peak_rss_mib'] for x in rs),
                         gpu_mem_peak_mib=max((x['gpu_mem_peak_mib'] for x in rs if x['gpu_mem_peak_mib'] is not None),
                                              default=None),
                         ok=all(x['rc'] == 0 and x['n_outputs'] == n for x in rs)))
    for row in rows:
        row['s_per_pair'] = round(row['wall_s'] / row['n_pairs'], 4)
        same = sorted((x for x in rows if (x['impl'], x['task'], x['variant']) ==
                       (row['impl'], row['task'], row['variant'])), key=lambda x: x['n_pairs'])
        row['marginal_s_per_pair'] = None
        if len(same) >= 2 and row is same[-1]:
            a, b = same[0], same[-1]
            # per round (the two runs of a round are close in time), then the median over rounds
            ga = {x['rep']: x['wall_s'] for x in groups[(row['impl'], row['task'], row['variant'], a['n_pairs'])]}
            gb = {x['rep']: x['wall_s'] for x in groups[(row['impl'], row['task'], row['variant'], b['n_pairs'])]}
            per = [round((gb[k] - ga[k]) / (b['n_pairs'] - a['n_pairs']), 4) for k in sorted(set(ga) & set(gb))]
            row['marginal_s_per_pair'] = round(statistics.median(per), 4) if per else None
            row['marginal_all'] = per
        summary.append(dict(record='timing', **row))

    hdr = f'{"impl":8s} {"task":8s} {"variant":7s} {"N":>4s} {"total s":>9s} {"s/pair":>8s} {"marg s/pair":>11s} ' \
          f'{"peak RSS MiB":>12s} {"GPU MiB":>8s} ok'
    print('\n' + f'device={args.device} size={args.size} threads={args.threads} ' +
          f'torch={info["torch"]} gpu={info["gpu"]} cpu={info["cpu"]}')
    print(hdr)
    for s in summary:
        if s['record'] == 'timing':
            m = '' if s['marginal_s_per_pair'] is None else f'{s["marginal_s_per_pair"]:.3f}'
            g = '' if s['gpu_mem_peak_mib'] is None else f'{s["gpu_mem_peak_mib"]:.0f}'
            print(f'{s["impl"]:8s} {s["task"]:8s} {s["variant"]:7s} {s["n_pairs"]:4d} {s["wall_s"]:9.2f} '
                  f'{s["s_per_pair"]:8.3f} {m:>11s} {s["peak_rss_mib"]:12.0f} {g:>8s} {s["ok"]}')
    for s in summary:
        if s['record'] == 'agreement':
            print('agreement:', json.dumps(s))
    with open(os.path.splitext(out)[0] + '.summary.jsonl', 'a') as fs:
        fs.write(json.dumps(dict(record='env', **info)) + '\n')
        for s in summary:
            fs.write(json.dumps(s) + '\n')
    return 0 if all(r['rc'] == 0 for r in records) else 1


if __name__ == '__main__':
    sys.exit(main())
