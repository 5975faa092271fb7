import type { Domains } from "@boardsync/client";

export type Element = Domains["whiteboard"]["item"];
export type WhiteboardCommand = Domains["whiteboard"]["command"];

export interface Style {
  stroke?: string;
  fill?: string;
  strokeWidth?: number;
  text?: string;
  fontSize?: number;
  color?: string;
}

/** An element's style: a JSON object as text; anything else reads as {}. Any other user may have
 *  written it (any JSON), so each field keeps only a value of its type: text is made a string,
 *  colours must be strings and sizes finite numbers. */
export function parseStyle(raw: unknown): Style {
  let v: unknown;
  try {
    v = typeof raw === "string" ? JSON.parse(raw) : raw;
  } catch {
    return {};
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) return {};
  const o = v as Record<string, unknown>;
  const style: Style = {};
  const str = (x: unknown) => (typeof x === "string" ? x : undefined);
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : undefined);
  if (str(o.stroke) !== undefined) style.stroke = o.stroke as string;
  if (str(o.fill) !== undefined) style.fill = o.fill as string;
  if (str(o.color) !== undefined) style.color = o.color as string;
  if (num(o.strokeWidth) !== undefined) style.strokeWidth = o.strokeWidth as number;
  if (num(o.fontSize) !== undefined) style.fontSize = o.fontSize as number;
  if (o.text !== undefined && o.text !== null) style.text = typeof o.text === "string" ? o.text : typeof o.text === "object" ? JSON.stringify(o.text) : String(o.text);
  return style;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A box with non-negative size. */
export function normalize(b: Box): Box {
  return {
    x: b.width < 0 ? b.x + b.width : b.x,
    y: b.height < 0 ? b.y + b.height : b.y,
    width: Math.abs(b.width),
    height: Math.abs(b.height),
  };
}

export function intersects(a: Box, b: Box): boolean {
  return a.x <= b.x + b.width && b.x <= a.x + a.width && a.y <= b.y + b.height && b.y <= a.y + a.height;
}

/** SVG path data of a stroke's points (x, y pairs relative to the element's corner). */
export function strokePath(points: number[], x: number, y: number): string {
  if (points.length < 2) return "";
  let d = `M${(x + points[0]).toFixed(1)} ${(y + points[1]).toFixed(1)}`;
  if (points.length === 2) d += ` l0.01 0`;
  for (let i = 2; i + 1 < points.length; i += 2) d += ` L${(x + points[i]).toFixed(1)} ${(y + points[i + 1]).toFixed(1)}`;
  return d;
}

export const PALETTE: { name: string; color: string; tint: string }[] = [
  { name: "black", color: "#1e1e2e", tint: "#f1f3f5" },
  { name: "red", color: "#e03131", tint: "#ffe3e3" },
  { name: "orange", color: "#f08c00", tint: "#fff3bf" },
  { name: "green", color: "#2f9e44", tint: "#d3f9d8" },
  { name: "blue", color: "#1971c2", tint: "#d0ebff" },
  { name: "violet", color: "#7048e8", tint: "#e5dbff" },
];

/** The size of a text at a font size (an estimate; the text is drawn from its top-left). */
export function textBox(text: string, fontSize: number): { width: number; height: number } {
  const lines = text.split("\n");
  const longest = Math.max(1, ...lines.map((l) => l.length));
  return { width: Math.round(longest * fontSize * 0.58 + 8), height: Math.round(lines.length * fontSize * 1.25 + 6) };
}
