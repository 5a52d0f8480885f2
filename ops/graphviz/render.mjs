// Lay out a Graphviz DOT graph read from standard input and write the SVG to standard output,
// with Graphviz compiled to WebAssembly (@hpcc-js/wasm-graphviz, pinned in package.json): no
// system package, no network. ops/diagram.py runs it with the pinned Node.
import { Graphviz } from "@hpcc-js/wasm-graphviz";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const graphviz = await Graphviz.load();
try {
  process.stdout.write(graphviz.dot(Buffer.concat(chunks).toString("utf8"), "svg"));
} catch (error) {
  process.stderr.write(`graphviz: ${error.message ?? error}\n`);
  process.exit(1);
}
