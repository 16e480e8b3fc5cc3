from django.urls import path

from postroom.contacts import views

app_name = "contacts"

# Ids are matched as strings and checked by the selectors (404 for anything else).
urlpatterns = [
    path("", views.book_list, name="books"),
    path("autocomplete/", views.autocomplete, name="autocomplete"),
    path("books/<str:book_id>/", views.book_detail, name="book"),
    path("books/<str:book_id>/settings/", views.book_settings, name="book_settings"),
    path("books/<str:book_id>/new/", views.contact_new, name="contact_new"),
    path("books/<str:book_id>/import/", views.book_import, name="book_import"),
    path("books/<str:book_id>/export.csv", views.book_export, name="book_export"),
    path("books/<str:book_id>/duplicates/", views.book_duplicates, name="book_duplicates"),
    path("people/<str:contact_id>/", views.contact_detail, name="contact"),
    path("people/<str:contact_id>/edit/", views.contact_edit, name="contact_edit"),
    path("people/<str:contact_id>/delete/", views.contact_delete, name="contact_delete"),
    path("people/<str:contact_id>/merge/", views.contact_merge, name="contact_merge"),
    path("from-message/<str:message_id>/", views.contact_from_sender, name="from_sender"),
]
