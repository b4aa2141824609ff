"""Master Equation Transformers: train (``train``), load (``load``, ``pretrained``) and query
(:class:`MET`: ``solve``, ``sample``, ``log_prob``, ``marginal``) one network for all parameters."""

from .checkpoint import MET, load, pretrained, pretrained_names
from .model import METConfig, METNet, VocabularyOverflowWarning
from .prompts import PromptSpace
from .teachers import TEACHERS, Teacher, register_teacher
from .train import train

__all__ = ["MET", "METConfig", "METNet", "PromptSpace", "TEACHERS", "Teacher", "VocabularyOverflowWarning",
           "load", "pretrained", "pretrained_names", "register_teacher", "train"]
