/** Types of the rendering worker's functions (the worker itself is plain JavaScript). */
/** A QR as a 1-bit PNG data URL: 4 px per module, a 4-module margin, error correction M. */
export function renderPng(text: string): string
/** A QR as an SVG data URL. */
export function renderSvg(text: string): Promise<string>
