// The world map: country outlines from world-atlas (TopoJSON, ISO 3166-1 numeric ids),
// decoded with topojson-client, drawn as SVG with an equirectangular projection. Countries
// are keyed by alpha-2 (what providers carry) through i18n-iso-countries' code table.

const SVG = 'http://www.w3.org/2000/svg';
// Antarctica has no providers and would take a third of the height.
const LAT_MAX = 84;
const LAT_MIN = -58;
const WIDTH = 960;
const SCALE = WIDTH / 360;
const HEIGHT = Math.round((LAT_MAX - LAT_MIN) * SCALE);
const ANTARCTICA = '010';

const project = ([lon, lat]) => [(lon + 180) * SCALE, (LAT_MAX - lat) * SCALE];

function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/**
 * A ring's longitudes made continuous (a ring crossing the antimeridian jumps by 360°), and
 * the copies to draw: the ring itself, and shifted by 360° the part that falls off the edge
 * (the view box clips both).
 */
function unwrap(ring) {
  const out = [ring[0].slice()];
  let shift = 0;
  for (let i = 1; i < ring.length; i++) {
    const d = ring[i][0] - ring[i - 1][0];
    if (d > 180) shift -= 360;
    else if (d < -180) shift += 360;
    out.push([ring[i][0] + shift, ring[i][1]]);
  }
  const lons = out.map((p) => p[0]);
  const copies = [out];
  if (Math.max(...lons) > 180) copies.push(out.map(([x, y]) => [x - 360, y]));
  if (Math.min(...lons) < -180) copies.push(out.map(([x, y]) => [x + 360, y]));
  return copies;
}

function ringPath(ring) {
  return (
    ring
      .map((p, i) => {
        const [x, y] = project(p);
        return `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join('') + 'Z'
  );
}

/** Area and centroid of a projected ring (shoelace). */
function ringCentroid(ring) {
  let a = 0;
  let cx = 0;
  let cy = 0;
  const pts = ring.map(project);
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const f = pts[j][0] * pts[i][1] - pts[i][0] * pts[j][1];
    a += f;
    cx += (pts[j][0] + pts[i][0]) * f;
    cy += (pts[j][1] + pts[i][1]) * f;
  }
  if (a === 0) return { area: 0, x: pts[0][0], y: pts[0][1] };
  return { area: Math.abs(a / 2), x: cx / (3 * a), y: cy / (3 * a) };
}

/** Shades: light to dark by count (1, 2–3, 4–9, 10–29, 30+). */
const SHADES = [
  [1, '#9cc3ee'],
  [2, '#6fa6e3'],
  [4, '#3f84d4'],
  [10, '#1f5fae'],
  [30, '#123f7a'],
];
export function shade(count) {
  let fill = null;
  for (const [min, colour] of SHADES) if (count >= min) fill = colour;
  return fill;
}
export const LEGEND = SHADES.map(([min, colour], i) => {
  const next = SHADES[i + 1]?.[0];
  return { label: next === undefined ? `${min}+` : next - 1 === min ? `${min}` : `${min}–${next - 1}`, colour };
});

export class WorldMap {
  /**
   * @param {SVGSVGElement|HTMLElement} container where the <svg> goes
   * @param {{topology: object, codes: [string, string, string][], onSelect: (alpha2: string) => void}} opts
   */
  constructor(container, { topology, codes, names, onSelect }) {
    const topojson = globalThis.topojson;
    if (!topojson) throw new Error('topojson-client did not load (/vendor/topojson-client.min.js)');
    const alpha2 = new Map(codes.map(([a2, , numeric]) => [numeric, a2]));
    this.countries = new Map(); // alpha-2 -> {paths, name, x, y}
    this.onSelect = onSelect;
    this.root = svg('svg', {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      class: 'world',
      role: 'img',
      'aria-label': 'World map of providers by country',
      preserveAspectRatio: 'xMidYMid meet',
    });
    this.root.append(svg('rect', { class: 'sea', x: 0, y: 0, width: WIDTH, height: HEIGHT }));
    const land = svg('g', { class: 'land' });
    this.markers = svg('g', { class: 'markers' });
    const features = topojson.feature(topology, topology.objects.countries).features;
    for (const f of features) {
      if (f.id === ANTARCTICA || !f.geometry) continue;
      const code = alpha2.get(f.id) ?? null;
      const polygons = f.geometry.type === 'Polygon' ? [f.geometry.coordinates] : f.geometry.coordinates;
      let d = '';
      let best = { area: -1, x: 0, y: 0 };
      for (const polygon of polygons) {
        polygon.forEach((ring, i) => {
          const copies = unwrap(ring);
          for (const copy of copies) d += ringPath(copy);
          if (i === 0) {
            const c = ringCentroid(copies[0]);
            if (c.area > best.area) best = c;
          }
        });
      }
      const name = (code && names?.[code]) || f.properties?.name || code || 'unknown';
      const path = svg('path', { d, class: 'country', 'fill-rule': 'evenodd' });
      const title = svg('title');
      title.textContent = name;
      path.append(title);
      if (code) {
        path.dataset.country = code;
        path.addEventListener('click', () => this.onSelect?.(code));
        const entry = this.countries.get(code) ?? { paths: [], name, x: best.x, y: best.y, title, area: -1 };
        entry.paths.push(path);
        if (best.area > entry.area) Object.assign(entry, { x: best.x, y: best.y, area: best.area });
        this.countries.set(code, entry);
      }
      land.append(path);
    }
    this.root.append(land, this.markers);
    container.replaceChildren(this.root);
  }

  /** Whether the map draws this country (small ones are missing at 1:110m). */
  has(code) {
    return this.countries.has(code);
  }

  /**
   * Shades countries by provider count and marks them with the count.
   * @param {Map<string, number>} counts alpha-2 -> providers
   * @param {string} selected alpha-2 of the country filter, or ""
   */
  update(counts, selected) {
    this.markers.replaceChildren();
    for (const [code, entry] of this.countries) {
      const n = counts.get(code) ?? 0;
      const fill = shade(n);
      for (const p of entry.paths) {
        // An inline style (CSSOM, allowed by the page's CSP): it wins over the stylesheet's land colour.
        p.style.fill = fill ?? '';
        p.classList.toggle('has-providers', n > 0);
        p.classList.toggle('selected', code === selected);
      }
      entry.title.textContent = n > 0 ? `${entry.name}: ${n} provider${n === 1 ? '' : 's'}` : entry.name;
    }
    // Markers after all shading, largest count on top.
    const marked = [...counts].filter(([code, n]) => n > 0 && this.countries.has(code)).sort((a, b) => a[1] - b[1]);
    for (const [code, n] of marked) {
      const { x, y, name } = this.countries.get(code);
      const r = 6 + Math.min(8, Math.log2(n) * 2);
      const g = svg('g', { class: `marker${code === selected ? ' selected' : ''}`, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})` });
      g.dataset.country = code;
      const title = svg('title');
      title.textContent = `${name}: ${n} provider${n === 1 ? '' : 's'}`;
      const text = svg('text', { 'text-anchor': 'middle', dy: '0.35em' });
      text.textContent = String(n);
      g.append(title, svg('circle', { r: r.toFixed(1) }), text);
      g.addEventListener('click', () => this.onSelect?.(code));
      this.markers.append(g);
    }
  }
}
