"""Draw the Online Boutique's product pictures and logo as small SVG files.

The pictures are our own: simple flat drawings generated from the shapes below, one per
product in ``boutique/data/products.json``. Run ``python make_pictures.py`` to rewrite
``boutique/static/img/`` (the output is committed, so the store does not need this).
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "boutique" / "static" / "img"

# file stem -> (background, SVG shapes on a 200x200 canvas)
PICTURES: dict[str, tuple[str, str]] = {
    "sunglasses": (
        "#fde68a",
        """
      <rect x="28" y="78" width="62" height="44" rx="18" fill="#1f2937"/>
      <rect x="110" y="78" width="62" height="44" rx="18" fill="#1f2937"/>
      <path d="M90 92 Q100 82 110 92" stroke="#b45309" stroke-width="5" fill="none"/>
      <path d="M28 88 L12 80 M172 88 L188 80" stroke="#b45309" stroke-width="5"/>
      <rect x="38" y="86" width="20" height="8" rx="4" fill="#6b7280"/>
      <rect x="120" y="86" width="20" height="8" rx="4" fill="#6b7280"/>""",
    ),
    "tank-top": (
        "#bfdbfe",
        """
      <path d="M70 30 L82 30 Q100 62 118 30 L130 30 L132 70 Q150 80 148 100 L148 172
               L52 172 L52 100 Q50 80 68 70 Z" fill="#f472b6"/>""",
    ),
    "watch": (
        "#e5e7eb",
        """
      <rect x="80" y="18" width="40" height="164" rx="10" fill="#92400e"/>
      <circle cx="100" cy="100" r="46" fill="#d4a017"/>
      <circle cx="100" cy="100" r="38" fill="#fffbeb"/>
      <path d="M100 100 L100 72 M100 100 L120 108" stroke="#1f2937" stroke-width="5"
            stroke-linecap="round"/>""",
    ),
    "loafers": (
        "#d9f99d",
        """
      <path
            d="M22 130 Q24 100 60 98 L118 96 Q150 96 170 112
               Q186 124 176 138 L30 142 Q20 140 22 130 Z"
            fill="#78350f"/>
      <rect x="22" y="138" width="156" height="10" rx="5" fill="#1c1917"/>
      <path d="M80 104 L120 104" stroke="#d97706" stroke-width="6"/>""",
    ),
    "hairdryer": (
        "#fbcfe8",
        """
      <rect x="40" y="62" width="110" height="56" rx="28" fill="#7c3aed"/>
      <rect x="150" y="70" width="24" height="40" rx="6" fill="#4c1d95"/>
      <rect x="70" y="110" width="28" height="70" rx="10" fill="#7c3aed"/>
      <circle cx="68" cy="90" r="14" fill="#ddd6fe"/>""",
    ),
    "candle-holder": (
        "#fef3c7",
        """
      <rect x="70" y="80" width="60" height="80" rx="6" fill="#fffbeb" stroke="#d97706"
            stroke-width="4"/>
      <path d="M100 40 Q114 60 100 74 Q86 60 100 40 Z" fill="#f97316"/>
      <rect x="50" y="158" width="100" height="14" rx="7" fill="#b45309"/>""",
    ),
    "salt-and-pepper-shakers": (
        "#e0f2fe",
        """
      <rect x="40" y="70" width="50" height="100" rx="18" fill="#f9fafb" stroke="#9ca3af"
            stroke-width="4"/>
      <rect x="110" y="70" width="50" height="100" rx="18" fill="#374151"/>
      <rect x="46" y="50" width="38" height="24" rx="8" fill="#9ca3af"/>
      <rect x="116" y="50" width="38" height="24" rx="8" fill="#9ca3af"/>""",
    ),
    "bamboo-glass-jar": (
        "#dcfce7",
        """
      <rect x="50" y="60" width="100" height="120" rx="16" fill="#ecfeff" stroke="#67e8f9"
            stroke-width="4"/>
      <rect x="44" y="40" width="112" height="26" rx="6" fill="#a16207"/>
      <path d="M60 46 L140 46 M60 58 L140 58" stroke="#ca8a04" stroke-width="3"/>""",
    ),
    "mug": (
        "#ede9fe",
        """
      <rect x="40" y="60" width="100" height="110" rx="12" fill="#f9fafb" stroke="#d1d5db"
            stroke-width="4"/>
      <ellipse cx="90" cy="64" rx="48" ry="10" fill="#0ea5e9"/>
      <path d="M140 86 Q176 86 176 116 Q176 146 140 146" stroke="#d1d5db" stroke-width="12"
            fill="none"/>""",
    ),
}

LOGO = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
  <rect width="64" height="64" rx="14" fill="#0f766e"/>
  <path d="M16 24 L48 24 L44 52 L20 52 Z" fill="#f0fdfa"/>
  <path d="M24 26 Q24 12 32 12 Q40 12 40 26" stroke="#f0fdfa" stroke-width="4" fill="none"/>
</svg>
"""


def svg(background: str, shapes: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 200" width="400" height="400">\n'
        f'  <rect width="200" height="200" fill="{background}"/>{shapes}\n</svg>\n'
    )


def main() -> None:
    (OUT / "products").mkdir(parents=True, exist_ok=True)
    for stem, (background, shapes) in PICTURES.items():
        (OUT / "products" / f"{stem}.svg").write_text(svg(background, shapes), encoding="utf-8")
    (OUT / "logo.svg").write_text(LOGO, encoding="utf-8")
    print(f"wrote {len(PICTURES)} pictures and the logo under {OUT}")


if __name__ == "__main__":
    main()
