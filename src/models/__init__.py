from src.models.recurrent import RecurrentNet

__all__ = ["RecurrentNet"]
