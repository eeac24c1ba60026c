"""Knowledge distillation, knowledge adaptation and rate losses; teacher loading."""
from .losses import box_kd_loss, feature_matching_loss, logit_kd_loss, rate_loss
from .teacher import build_teacher
