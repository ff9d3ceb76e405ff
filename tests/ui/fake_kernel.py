"""An IPython kernel that calls its language something else: the sidebar must say it cannot
measure it. Started by tests through a kernelspec (``python -m tests.ui.fake_kernel -f ...``)."""

from __future__ import annotations

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp


class OtherLanguageKernel(IPythonKernel):
    implementation = "fake"
    language_info = {**IPythonKernel.language_info, "name": "fakelang"}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=OtherLanguageKernel)
