from .lars import ForeachLARS

__all__ = ['ForeachLARS']
