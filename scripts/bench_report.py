#!/usr/bin/env python3
"""Reads the JSON lines scripts/bench.sh wrote, prints the ratios the
performance goals are stated in, and draws throughput against the number
of clients for both agents as a small SVG (standard library only)."""

import json
import sys


def load(path):
    results = {}
    for line in open(path):
        record = json.loads(line)
        results[(record["label"], record["agent"])] = record["result"]
    return results


def ratio_line(name, value, goal, higher_is_better, detail):
    met = value >= goal if higher_is_better else value <= goal
    sign = ">=" if higher_is_better else "<="
    verdict = "met" if met else "NOT MET"
    print(f"{name:<44} {value:8.2f}  (goal {sign} {goal})  {verdict}   {detail}")


def report(results):
    get = lambda label, agent: results.get((label, agent))
    kw16, sa16 = get("ed25519-sign-c16", "keyward"), get("ed25519-sign-c16", "ssh-agent")
    ratio_line("Ed25519 16 clients, throughput x ssh-agent", kw16["per_second"] / sa16["per_second"], 20, True,
               f"{kw16['per_second']:.0f}/s vs {sa16['per_second']:.0f}/s")
    kw1, sa1 = get("ed25519-sign-c1", "keyward"), get("ed25519-sign-c1", "ssh-agent")
    ratio_line("Ed25519 1 client, p50 latency x ssh-agent", kw1["p50_us"] / sa1["p50_us"], 0.15, False,
               f"{kw1['p50_us']:.1f} us vs {sa1['p50_us']:.1f} us")
    # The ceiling is measured before and after the socket runs; the
    # higher of the two counts, which makes the ratio harder to meet.
    ceiling = max((get(f"ed25519-in-process-{n}", "keyward") for n in (1, 2)), key=lambda run: run["per_second"])
    for label in ("ed25519-pipeline", "ed25519-batch"):
        run = get(label, "keyward")
        ratio_line(f"{label}, throughput x in-process ceiling", run["per_second"] / ceiling["per_second"], 0.7, True,
                   f"{run['per_second']:.0f}/s vs {ceiling['per_second']:.0f}/s ({ceiling['clients']} threads)")
    kwr, sar = get("rsa3072-sign-c16", "keyward"), get("rsa3072-sign-c16", "ssh-agent")
    ratio_line("RSA-3072 16 clients, throughput x ssh-agent", kwr["per_second"] / sar["per_second"], 1.5, True,
               f"{kwr['per_second']:.0f}/s vs {sar['per_second']:.0f}/s")
    # Calm and slow runs alternate; compare their means. Two slow
    # clients: one pausing 100 us between bytes, one writing bytes as fast
    # as it can (a byte flood).
    mean = lambda runs: sum(run["per_second"] for run in runs) / len(runs)
    rounds = [n for n in range(1, 10) if get(f"ed25519-c16-calm-{n}", "keyward")]
    calm = mean([get(f"ed25519-c16-calm-{n}", "keyward") for n in rounds])
    for kind, pacing in (("slow", "100 us between bytes"), ("flood", "no pause between bytes")):
        runs = [get(f"ed25519-c16-{kind}-{n}", "keyward") for n in rounds]
        if not all(runs):
            continue
        sent = sum(run["slow_client_bytes"] for run in runs)
        ratio_line(f"256 KiB frame byte by byte ({kind}): drop %", (1 - mean(runs) / calm) * 100, 10, False,
                   f"{mean(runs):.0f}/s vs {calm:.0f}/s (mean of {len(rounds)} alternating rounds), "
                   f"{pacing}, the client sent {sent} bytes")
        controls = [get(f"ed25519-c16-{kind}-elsewhere-{n}", "keyward") for n in rounds]
        if all(controls):
            sent = sum(run["slow_client_bytes"] for run in controls)
            print(f"{'  control: same client aimed at ssh-agent %':<44} {(1 - mean(controls) / calm) * 100:8.2f}  "
                  f"{mean(controls):.0f}/s, the client sent {sent} bytes: what it costs this machine without Keyward serving it")
    sa_calm, sa_slow = get("ed25519-c16-calm-1", "ssh-agent"), get("ed25519-c16-slow-1", "ssh-agent")
    if sa_calm and sa_slow:
        print(f"{'  (ssh-agent under the 100 us slow client)':<44} {(1 - sa_slow['per_second'] / sa_calm['per_second']) * 100:8.2f}  %")
    small = get("rss-2-keys", "keyward")
    many = get("many-keys", "keyward")
    if small:
        print(f"{'RSS, 2 keys unsealed':<44} {small['rss_kib'] / 1024:8.1f}  MiB")
    if many:
        print(f"{'RSS, %d keys unsealed' % many['keys']:<44} {many['rss_kib'] / 1024:8.1f}  MiB")
        print(f"{'start + unseal, %d keys (cheap KDF)' % many['keys']:<44} {many['start_unseal_ms']:8.0f}  ms")


def svg(results, path):
    clients = [1, 2, 4, 8, 16, 32]
    series = {}
    for agent in ("keyward", "ssh-agent"):
        series[agent] = [results[(f"ed25519-sign-c{c}", agent)]["per_second"] for c in clients]
    width, height, left, right, top, bottom = 640, 400, 80, 150, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max(max(values) for values in series.values())
    step = 10 ** (len(str(int(top_value))) - 1)
    top_value = (int(top_value / step) + 1) * step
    x = lambda i: left + plot_w * i / (len(clients) - 1)
    y = lambda v: top + plot_h * (1 - v / top_value)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">Ed25519 signatures per second, one request at a time per client</text>']
    for k in range(6):
        value = top_value * k / 5
        out.append(f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{int(value):,}</text>')
    for i, c in enumerate(clients):
        out.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">concurrent clients</text>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>')
    colours = {"keyward": "#1f77b4", "ssh-agent": "#d62728"}
    for n, (agent, values) in enumerate(series.items()):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colours[agent]}" stroke-width="2"/>')
        for i, v in enumerate(values):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colours[agent]}"/>')
        ly = top + 20 + 20 * n
        out.append(f'<line x1="{left + plot_w + 15}" y1="{ly}" x2="{left + plot_w + 40}" y2="{ly}" stroke="{colours[agent]}" stroke-width="2"/>')
        out.append(f'<text x="{left + plot_w + 45}" y="{ly + 4}">{agent}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"plot written to {path}")


if __name__ == "__main__":
    data = load(sys.argv[1])
    report(data)
    svg(data, sys.argv[2])
