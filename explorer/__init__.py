"""The Gradio user interface of SlotCon Explorer: tabs, callbacks, rendering, figures, exports.

ctx = open_context(index_dir, checkpoint)   # index + encoder, loaded once
demo = build_app(ctx)                        # gr.Blocks, not launched
demo.launch(**launch_options(ctx, index_dir, checkpoint))
"""

from explorer.context import AppContext, ServeConfig, open_context
from explorer.ui import build_app, launch_options
from explorer.uploads import UploadLimits, UploadRejected, read_upload

__all__ = [
    "AppContext",
    "ServeConfig",
    "UploadLimits",
    "UploadRejected",
    "build_app",
    "launch_options",
    "open_context",
    "read_upload",
]
