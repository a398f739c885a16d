from django.urls import path

from spend.api.views import BudgetDetailView, BudgetListView

urlpatterns = [
    path("", BudgetListView.as_view(), name="budgets"),
    path("<int:budget_id>/", BudgetDetailView.as_view(), name="budget-detail"),
]
