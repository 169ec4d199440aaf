"""Clicks on a plotly chart sent to Python: gr.Plot has no click event, so a script attaches
plotly_click to the chart (again after every re-render) and writes "<value>:<time>" into a
hidden textbox, whose .change runs in Python (the time makes a repeated click a change)."""

from __future__ import annotations


def plotly_click_js(plot_id: str, box_id: str, value_js: str) -> str:
    """The script for demo.load(None, js=...): clicks on the plotly chart inside #plot_id write
    `value_js` (a JS expression of the clicked `point`; null or undefined ignores the click)
    into the textbox #box_id."""
    return f"""
() => {{
  const attach = () => {{
    document.querySelectorAll('#{plot_id} .js-plotly-plot').forEach((plot) => {{
      if (plot.dataset.slotconClick || typeof plot.on !== 'function') return;
      plot.dataset.slotconClick = '1';
      plot.on('plotly_click', (event) => {{
        const point = event && event.points && event.points[0];
        const value = point ? {value_js} : null;
        if (value === null || value === undefined) return;
        const box = document.querySelector('#{box_id} textarea, #{box_id} input');
        if (!box) return;
        box.value = `${{value}}:${{Date.now()}}`;
        box.dispatchEvent(new Event('input', {{ bubbles: true }}));
      }});
    }});
  }};
  new MutationObserver(attach).observe(document.body, {{ childList: true, subtree: true }});
  attach();
}}
"""
