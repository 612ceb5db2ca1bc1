
from .detcon_loss import DetConLoss, detcon_loss, detcon_s_loss  # noqa: F401
from .detco_loss import DetCoLoss, detco_loss  # noqa: F401
