/**
 * docs/performance-chart.svg from loadtest/results.json: per scenario, req/s and p99 of the
 * gateway beside the bare pass-through (ceiling), each pair scaled to its larger value and
 * labelled with the numbers. Plain SVG, no dependency; `npm run loadtest` rewrites it, and
 * `node dist/loadtest/chart.js` redraws it from the committed results.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fmt } from "../bench/format.js";

export const CHART_PATH = fileURLToPath(new URL("../../docs/performance-chart.svg", import.meta.url));
const RESULTS = fileURLToPath(new URL("../../loadtest/results.json", import.meta.url));

interface Summary {
  target: string;
  req_per_s: number;
  p99_ms: number;
}
interface Results {
  generated_at: string;
  threads: number | string;
  groups: { id: string; title: string; summaries: Summary[] }[];
}

const NAMES: Record<string, string> = { small: "small body", large: "103 KB body", stream: "SSE, 50 events" };
const COLORS: Record<string, string> = { ceiling: "#9aa5b1", gateway: "#2f6fde", gateway_1t: "#7fa7ef" };
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

export function chartSvg(r: Results): string {
  const shown = ["ceiling", "gateway", "gateway_1t"];
  const W = 760,
    left = 150,
    barW = 230,
    gap = 40,
    rowH = 16;
  const out: string[] = [];
  let y = 56;
  for (const g of r.groups) {
    const ss = g.summaries.filter((s) => shown.includes(s.target));
    if (ss.length === 0) continue;
    out.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(NAMES[g.id] ?? g.id)}</text>`);
    const maxR = Math.max(...ss.map((s) => s.req_per_s)),
      maxP = Math.max(...ss.map((s) => s.p99_ms));
    for (const s of ss) {
      const c = COLORS[s.target]!;
      const label = s.target === "gateway_1t" ? "gateway, 1 thread" : s.target;
      out.push(`<text x="${left - 8}" y="${y + 12}" text-anchor="end" font-size="11">${label}</text>`);
      const wr = Math.max(1, (s.req_per_s / maxR) * barW),
        wp = Math.max(1, (s.p99_ms / maxP) * barW);
      out.push(
        `<rect x="${left}" y="${y + 2}" width="${wr.toFixed(1)}" height="${rowH - 4}" fill="${c}"/><text x="${left + wr + 4}" y="${y + 12}" font-size="11">${fmt(s.req_per_s)}</text>`,
      );
      const x2 = left + barW + gap + 60;
      out.push(
        `<rect x="${x2}" y="${y + 2}" width="${wp.toFixed(1)}" height="${rowH - 4}" fill="${c}"/><text x="${x2 + wp + 4}" y="${y + 12}" font-size="11">${fmt(s.p99_ms)} ms</text>`,
      );
      y += rowH;
    }
    y += 14;
  }
  const head = [
    `<text x="10" y="20" font-weight="bold" font-size="14">Gateway vs bare uWS + undici pass-through (load test ${esc(r.generated_at.slice(0, 10))}, HTTP_THREADS ${esc(String(r.threads))})</text>`,
    `<text x="${left}" y="44" font-size="12">req/s (longer is better)</text>`,
    `<text x="${left + barW + gap + 60}" y="44" font-size="12">p99 latency (shorter is better)</text>`,
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 10}" viewBox="0 0 ${W} ${y + 10}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${[...head, ...out].join("\n")}\n</svg>\n`;
}

export function writeChart(): void {
  writeFileSync(CHART_PATH, chartSvg(JSON.parse(readFileSync(RESULTS, "utf8")) as Results));
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) writeChart();
