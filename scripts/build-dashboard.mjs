// The dashboard's static assets (docs/dashboard.md), part of `npm run build`: the page's own
// files from dashboard/ and uPlot's prebuilt browser bundle, copied into
// dist/server/dashboard/static/, where server/dashboard/routes.ts serves them from. No
// bundler and no network: the page is plain JS and uPlot ships a minified IIFE.
import { copyFileSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist/server/dashboard/static");
mkdirSync(out, { recursive: true });
const uplot = dirname(createRequire(import.meta.url).resolve("uplot/package.json"));
const files = [
  ...readdirSync(join(root, "dashboard")).map((f) => [join(root, "dashboard", f), f]),
  [join(uplot, "dist/uPlot.iife.min.js"), "uPlot.iife.min.js"],
  [join(uplot, "dist/uPlot.min.css"), "uPlot.min.css"],
];
let total = 0;
for (const [from, name] of files) {
  copyFileSync(from, join(out, name));
  total += statSync(from).size;
}
if (process.env.DASHBOARD_BUILD_VERBOSE === "1") process.stderr.write(`dashboard: ${files.length} files, ${total} bytes\n`);
