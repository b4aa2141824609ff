"""Master Equation Transformers: train (``train``), load (``load``, ``pretrained``) and query
(:class:`MET`: ``solve``, ``sample``, ``log_prob``, ``marginal``) one network for all parameters;
``for_model`` gives any network a MET (bundled, cached or trained on demand);
``train_distributed`` trains one on several processes (torch.distributed)."""

from .auto import default_box, default_times, find_met, for_model, run_summary
from .checkpoint import MET, load, pretrained, pretrained_names
from .distributed import train_distributed
from .model import METConfig, METNet, VocabularyOverflowWarning
from .prompts import PromptSpace
from .teachers import TEACHERS, Teacher, register_teacher
from .train import train

__all__ = ["MET", "METConfig", "METNet", "PromptSpace", "TEACHERS", "Teacher", "VocabularyOverflowWarning",
           "default_box", "default_times", "find_met", "for_model", "load", "pretrained", "pretrained_names",
           "register_teacher", "run_summary", "train", "train_distributed"]
