// The sharp (npm) side of the kernel benchmark: the same photo, widths, formats and qualities as
// Kiln's defaults, the way sharp is used (one pipeline per output, each with shrink-on-load),
// its cache off. Usage: node sharp_kernel.mjs IMAGE RUNS WIDTHS JPEG_Q WEBP_Q
// Prints one line in the same key=value form as `cargo bench --bench kernel`.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.SHARP_DIR + "/");
const sharp = require("sharp");
const [path, runsArg, widthsArg, jpegArg, webpArg] = process.argv.slice(2);
const runs = Number(runsArg);
const widths = widthsArg.split(",").map(Number).sort((a, b) => b - a);
const [jpegQ, webpQ] = [Number(jpegArg), Number(webpArg)];
sharp.cache(false);
const input = readFileSync(path);

async function render() {
  let jpeg = 0, webp = 0;
  for (const width of widths) {
    const resized = sharp(input).resize({ width, withoutEnlargement: true });
    jpeg += (await resized.clone().jpeg({ quality: jpegQ }).toBuffer()).length;
    webp += (await resized.clone().webp({ quality: webpQ }).toBuffer()).length;
  }
  return { jpeg, webp };
}

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let sizes = await render();
const walls = [], cpus = [];
for (let i = 0; i < runs; i++) {
  const cpu = process.cpuUsage(), wall = process.hrtime.bigint();
  sizes = await render();
  walls.push(Number(process.hrtime.bigint() - wall) / 1e6);
  const used = process.cpuUsage(cpu);
  cpus.push((used.user + used.system) / 1000);
}
const rss = process.resourceUsage().maxRSS / 1024;
console.log(`sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}) kernel:`);
console.log(`runs=${runs} median_wall_ms=${median(walls).toFixed(1)} median_cpu_ms=${median(cpus).toFixed(1)} ` +
  `jpeg_bytes=${sizes.jpeg} webp_bytes=${sizes.webp} peak_rss_mb=${rss.toFixed(1)}`);
